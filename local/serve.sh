#!/usr/bin/env bash
# Stage 6: serve the exported model over HTTP (deploy/serve.py, see
# docs/serving.md) until stopped with Ctrl-C or SIGTERM. Extra flags go to
# serve.py, e.g. local/serve.sh conf/demo.yaml --port 8091 --host 0.0.0.0
set -euo pipefail
conf="${1:?usage: local/serve.sh CONF [serve.py flags]}"
shift
source "$(dirname "$0")/../path.sh"
exec python "${MAIN_ROOT}/paddlespeech/cls/exps/panns/deploy/serve.py" \
  --config "${conf}" "$@"
