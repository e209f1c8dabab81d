#!/bin/sh
# make check entry: runs tests/integration/test_limits.py against the built lokrd.
# Debian's python3 (/usr/bin) is preferred (python3-numpy lives there).
PY=/usr/bin/python3
[ -x "$PY" ] || PY=$(command -v python3) || exit 77
exec "$PY" "${top_srcdir:-.}/tests/integration/test_limits.py"
