#!/usr/bin/env bash
# MCP with real clients: starts `calseta dev` (throwaway Postgres, in-process queues, provider
# simulator, no demo data) on free ports, then
#   1. the official Python MCP SDK (scripts/mcp-client-test.py): every tool and resource, output
#      schemas, refusals without a key / without a scope;
#   2. the MCP Inspector CLI (npm @modelcontextprotocol/inspector) lists the tools — skipped with
#      a message only when npm cannot install it.
#
#   VENV=/path/to/venv scripts/mcp-test.sh
set -euo pipefail
repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"
: "${VENV:?set VENV to a Python venv (scripts/setup.sh ensure_venv)}"
if ! "$VENV/bin/python" -c 'import mcp, jsonschema' 2>/dev/null; then
  echo "mcp-test: installing the MCP Python SDK into $VENV" >&2
  "$VENV/bin/pip" install -q --disable-pip-version-check 'mcp>=2.3,<3' 'jsonschema>=4,<5'
fi
cargo build -p calseta-cli --locked -q
bin="${CARGO_TARGET_DIR:-$repo_root/target}/debug/calseta"
key="cai_$("$VENV/bin/python" -c 'import secrets, base64; print(base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("="))')"
work="$(mktemp -d)"
RUST_LOG=warn CALSETA_NO_DEMO=true "$bin" dev --port 0 --mcp-port 0 --admin-key "$key" --data-dir "$work/dev" \
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
ready="$(grep '^calseta dev ready' "$work/dev.log")"
api="$(sed -E 's/.*api (http:\/\/[^ ]+).*/\1/' <<<"$ready")"
mcp="$(sed -E 's/.*mcp (http:\/\/[^ ]+\/mcp).*/\1/' <<<"$ready")"
echo "mcp-test: api $api, mcp $mcp" >&2
"$VENV/bin/python" scripts/mcp-client-test.py --api "$api" --mcp "$mcp" --admin-key "$key" \
  || { echo "mcp-client-test failed; calseta dev log:" >&2; grep -v ' WARN ' "$work/dev.log" | tail -50 >&2; exit 1; }

# The Inspector CLI, pinned; its npm cache lives outside the repository.
inspector="@modelcontextprotocol/inspector@2"
if out="$(timeout 300 npx -y "$inspector" --cli "$mcp" --transport http --method tools/list \
    --header "Authorization: Bearer $key" 2>"$work/inspector.err")"; then
  for t in search_alerts get_alert_payload post_alert_finding update_alert_status update_alert_malice \
      update_indicator_malice search_detection_rules enrich_indicator; do
    grep -q "\"$t\"" <<<"$out" || { echo "inspector: tool $t missing" >&2; echo "$out" >&2; exit 1; }
  done
  echo "mcp-test: inspector CLI listed all 8 tools" >&2
elif grep -qiE 'npm (ERR|error)|ENOTFOUND|EAI_AGAIN|E404|ETIMEDOUT' "$work/inspector.err"; then
  echo "mcp-test: SKIPPED inspector smoke test: npm could not install $inspector:" >&2
  tail -5 "$work/inspector.err" >&2
else
  echo "inspector CLI failed:" >&2; cat "$work/inspector.err" >&2; echo "$out" >&2; exit 1
fi
