#!/bin/sh
# Every C file of lib/, daemon/ and tools/ is formatted as .clang-format says
# (STYLE.md 13).  Skips (77) where clang-format is not installed.
cd "${top_srcdir:-.}" || exit 99
command -v clang-format >/dev/null 2>&1 || { echo "clang-format not installed"; exit 77; }
bad=0
for f in lib/*.c lib/*.h daemon/*.c daemon/*.h tools/*.c tools/*.h; do
	[ -f "$f" ] || continue
	if ! clang-format --dry-run -Werror "$f" >/dev/null 2>&1; then
		echo "not clang-formatted: $f (run clang-format -i $f)"
		bad=1
	fi
done
exit $bad
