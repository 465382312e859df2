#!/usr/bin/env bash
# Property-based API test: starts `calseta dev` (throwaway Postgres, in-process queues, provider
# simulator, no demo data) on a free port and runs schemathesis against its served
# /openapi.json. Fails on any server error, undocumented status code or content type, or a
# response that violates the documented schema.
#
#   VENV=/path/to/venv scripts/schemathesis.sh [--max-examples N]
set -euo pipefail
repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"
: "${VENV:?set VENV to a Python venv (scripts/setup.sh ensure_venv)}"
if [ ! -x "$VENV/bin/st" ]; then
  echo "schemathesis: installing into $VENV" >&2
  "$VENV/bin/pip" install -q --disable-pip-version-check 'schemathesis>=4.3,<5'
fi
source scripts/dev-stack.sh
port="$("$VENV/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
trap stop_dev_stack EXIT
start_dev_stack --port "$port"
key="$dev_key"
work="$dev_work"
echo "schemathesis: calseta dev on port $port" >&2
"$VENV/bin/st" run "http://127.0.0.1:$port/openapi.json" \
  -H "Authorization: Bearer $key" \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance \
  --max-examples 25 --workers 1 --seed 20261128 --no-color "$@" \
  || { echo "schemathesis failed; calseta dev log:" >&2; grep -v ' WARN ' "$work/dev.log" | tail -50 >&2; exit 1; }
