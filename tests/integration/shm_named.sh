#!/bin/sh
# make check entry: runs tests/integration/test_shm_named.py against the built lokrd.
# Debian's python3 (/usr/bin) is preferred: python3-numpy, -jsonschema and
# -yaml live there.  Exit 77 (skip) only when no python3 exists at all; the
# script itself skips when one of those modules is missing.
PY=/usr/bin/python3
[ -x "$PY" ] || PY=$(command -v python3) || exit 77
exec "$PY" "${top_srcdir:-.}/tests/integration/test_shm_named.py"
