#!/bin/sh
# Demo run by `./quickstart`: inspect and merge the bundled LyCORIS fixtures.
set -eu
cd "$(dirname "$0")/.."
F=tests/data/fixtures
./tools/lokr inspect "$F/adapters/lokr_factor8.safetensors" --base "$F/base.safetensors"
./tools/lokr merge --base "$F/base.safetensors" \
	--adapter "$F/adapters/lokr_balanced.safetensors:1.0" -o /tmp/lokrd-demo-merged.safetensors
./tools/lokr inspect /tmp/lokrd-demo-merged.safetensors 2>/dev/null || true
echo "merged base written to /tmp/lokrd-demo-merged.safetensors"
