#!/bin/sh
# The gateway speed benchmark (issue 4): python -m benchmarks.gateway, from the repository root.
#   benchmarks/run.sh                     # nginx + wrk when installed, else the Python fallbacks
#   benchmarks/run.sh --peer litellm      # also the LiteLLM proxy (1 worker) from /tmp/litellm-venv
#   benchmarks/run.sh --rounds 5 --duration 5 --json /tmp/bench.json
set -eu
cd "$(dirname "$0")/.."
exec "${PYTHON:-python3}" -m benchmarks.gateway "$@"
