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
source scripts/dev-stack.sh
trap stop_dev_stack EXIT
start_dev_stack --port 0
key="$dev_key"
work="$dev_work"
ready="$dev_ready"
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
