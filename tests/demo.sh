#!/bin/sh
# The demo run by `./quickstart`: make the demo data (tools/lokr demo -o demo)
# if it is not there yet, print curl commands to try, and run lokrd on it in
# the foreground (Ctrl-C stops it).  Run from anywhere; paths in the printed
# commands are relative to the repository root, where they are meant to be
# typed.
#
#   LOKRD_PORT=8080        port to listen on (127.0.0.1)
#   LOKRD_BUILDDIR=.       where tools/lokr and daemon/lokrd were built
#   LOKRD_DEMO_DRY=1       only print the commands (tests/integration uses it)
set -eu
cd "$(dirname "$0")/.."
B=${LOKRD_BUILDDIR:-.}
PORT=${LOKRD_PORT:-8080}
URL="http://127.0.0.1:$PORT"
J="-H 'Content-Type: application/json'"

commands() {
	cat <<EOF
curl -s $URL/readyz
curl -s $URL/v1/model
curl -s $URL/v1/adapters
curl -s $URL/v1/adapters/lokr-dora
curl -s $J --data-binary @demo/requests/apply-linear.json $URL/v1/apply
curl -s $J --data-binary @demo/requests/apply-dora.json $URL/v1/apply
curl -s $J --data-binary @demo/requests/apply-conv.json $URL/v1/apply
curl -s $J -d '{"layer": "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q", "adapters": [{"id": "nope"}], "input": {"dtype": "f32", "shape": [1, 320], "b64": ""}}' $URL/v1/apply
curl -s $J --data-binary @demo/requests/merge.json -o merged.safetensors $URL/v1/merge
curl -s -X PUT -H 'Content-Type: application/octet-stream' --data-binary @demo/adapters/loha.safetensors $URL/v1/adapters/my-loha
curl -s $J -d '{"pin": true}' $URL/v1/adapters/my-loha/load
curl -s -X DELETE $URL/v1/adapters/my-loha
curl -s $URL/metrics
EOF
}

if [ "${LOKRD_DEMO_DRY:-}" = 1 ]; then
	commands
	exit 0
fi
if [ ! -f demo/base.safetensors ]; then
	"$B/tools/lokr" demo -o demo
fi
cat <<EOF

lokrd serves the demo on $URL (Ctrl-C stops it).  From this directory, in
another terminal, try:

$(commands | sed 's/^/  /')

The eighth command sends an invalid request on purpose (an empty b64 input):
it answers 400 with a JSON error.  merged.safetensors receives the f16 merged
weights of every layer lokr-unbalanced touches.

EOF
exec "$B/daemon/lokrd" --base demo/base.safetensors --adapters demo/adapters \
	--listen "127.0.0.1:$PORT"
