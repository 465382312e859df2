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
cargo build -p calseta-cli --locked -q
bin="${CARGO_TARGET_DIR:-$repo_root/target}/debug/calseta"
port="$("$VENV/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
key="cai_$("$VENV/bin/python" -c 'import secrets, base64; print(base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("="))')"
work="$(mktemp -d)"
RUST_LOG=warn CALSETA_NO_DEMO=true CALSETA_ADMIN_KEY="$key" "$bin" dev --port "$port" --mcp-port 0 --data-dir "$work/dev" \
  >"$work/dev.log" 2>&1 &
dev_pid=$!
cleanup() {
  kill -INT "$dev_pid" 2>/dev/null || true
  for _ in $(seq 1 100); do kill -0 "$dev_pid" 2>/dev/null || break; sleep 0.2; done
  rm -rf "$work"
}
trap cleanup EXIT
for _ in $(seq 1 300); do
  if grep -q '^calseta dev ready' "$work/dev.log" 2>/dev/null; then break; fi
  if ! kill -0 "$dev_pid" 2>/dev/null; then cat "$work/dev.log" >&2; exit 1; fi
  sleep 0.2
done
echo "schemathesis: calseta dev on port $port" >&2
"$VENV/bin/st" run "http://127.0.0.1:$port/openapi.json" \
  -H "Authorization: Bearer $key" \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance \
  --max-examples 25 --workers 1 --seed 20261128 --no-color "$@" \
  || { echo "schemathesis failed; calseta dev log:" >&2; grep -v ' WARN ' "$work/dev.log" | tail -50 >&2; exit 1; }
