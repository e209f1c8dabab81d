#!/bin/sh
# make check entry: runs tests/hostile/test_hostile.py against the built lokrd.
PY=/usr/bin/python3
[ -x "$PY" ] || PY=$(command -v python3) || exit 77
exec "$PY" "${top_srcdir:-.}/tests/hostile/test_hostile.py"
