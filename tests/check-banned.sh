#!/bin/sh
# Banned functions (STYLE.md 5): unbounded or unchecked C library calls.
cd "${top_srcdir:-.}" || exit 99
hits=$(grep -n -E '\b(sprintf|vsprintf|strcpy|strcat|atoi|atol|atof|strtok|gets)[[:space:]]*\(' \
	lib/*.c lib/*.h daemon/*.c daemon/*.h tools/*.c 2>/dev/null)
if [ -n "$hits" ]; then
	echo "banned functions used:"; echo "$hits"; exit 1
fi
exit 0
