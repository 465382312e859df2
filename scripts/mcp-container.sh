#!/usr/bin/env bash
# The MCP image without a container engine: runs the build step of functions/mcp/Dockerfile
# (`cargo build --release --locked -p mcp`, the workspace's release profile), then starts the
# binary the way the image does — a clean environment holding only the container's settings, a
# non-root user when run as root, CALSETA_MCP_ADDR — against the database of a throwaway
# `calseta dev`, and checks /health, the 401 before MCP, and a clean exit on SIGTERM.
#
#   VENV=/path/to/venv scripts/mcp-container.sh
set -euo pipefail
repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"
: "${VENV:?set VENV to a Python venv (scripts/setup.sh ensure_venv)}"
target="${CARGO_TARGET_DIR:-$repo_root/target}"
cargo build --release --locked -p mcp
source scripts/dev-stack.sh
mcp_pid=""
cleanup() {
  [ -n "$mcp_pid" ] && kill "$mcp_pid" 2>/dev/null || true
  stop_dev_stack
}
trap cleanup EXIT
# Made before the stack starts: the non-root binary and the postgres user both need to enter it.
dev_work="$(mktemp -d)"
chmod 755 "$dev_work"
start_dev_stack --port 0
work="$dev_work"
install -m 755 "$target/release/mcp" "$work/mcp"   # the image's /usr/local/bin/mcp
echo "mcp-container: binary $(du -h "$work/mcp" | cut -f1)" >&2
free_port() { "$VENV/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
pg_port="$(sed -E 's/.*embedded postgres on 127\.0\.0\.1:([0-9]+).*/\1/' <<<"$dev_ready")"
port="$(free_port)"
# The embedded cluster is private (SCRAM): its random password is in a 0600 file beside it.
pg_password="$(cat "$work/dev/pg/superuser.password")"

# As the image runs it: only these variables, a non-root user.
run_as=()
if [ "$(id -u)" = 0 ]; then run_as=(setpriv --reuid=nobody --regid=nogroup --clear-groups); fi
env -i PATH=/usr/bin:/bin HOME=/nonexistent \
  CALSETA_MCP_ADDR="127.0.0.1:$port" \
  DATABASE_URL="postgres://calseta:$pg_password@127.0.0.1:$pg_port/calseta" \
  CALSETA_KEY_HASH_SECRET="$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')" \
  CALSETA_ENCRYPTION_KEY="$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')" \
  ENRICH_QUEUE_URL=http://127.0.0.1:1/queue/enrich DISPATCH_QUEUE_URL=http://127.0.0.1:1/queue/dispatch \
  AWS_REGION=us-east-1 AWS_ACCESS_KEY_ID=x AWS_SECRET_ACCESS_KEY=x AWS_ENDPOINT_URL=http://127.0.0.1:1 \
  AWS_EC2_METADATA_DISABLED=true RUST_LOG=info \
  "${run_as[@]}" "$work/mcp" >"$work/mcp.log" 2>&1 &
mcp_pid=$!
code=""
for _ in $(seq 1 100); do
  code="$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/health" || true)"
  [ "$code" = 200 ] && break
  kill -0 "$mcp_pid" 2>/dev/null || { cat "$work/mcp.log" >&2; echo "mcp-container: the binary exited" >&2; exit 1; }
  sleep 0.2
done
[ "$code" = 200 ] || { cat "$work/mcp.log" >&2; echo "mcp-container: /health answered $code" >&2; exit 1; }
echo "mcp-container: /health 200" >&2
headers="$(curl -s -D - -o /dev/null -X POST "http://127.0.0.1:$port/mcp" -H 'Content-Type: application/json' \
  -H 'Accept: application/json, text/event-stream' -d '{"jsonrpc":"2.0","id":1,"method":"tools/list"}')"
grep -q '^HTTP/1.1 401' <<<"$headers" && grep -qi '^www-authenticate: Bearer' <<<"$headers" \
  || { echo "mcp-container: expected 401 with WWW-Authenticate, got:" >&2; echo "$headers" >&2; exit 1; }
echo "mcp-container: /mcp without a key: 401 + WWW-Authenticate" >&2
if [ "$(id -u)" = 0 ]; then
  user="$(ps -o user= -p "$(pgrep -P "$mcp_pid" 2>/dev/null || echo "$mcp_pid")" | tr -d ' ')"
  [ "$user" = nobody ] || { echo "mcp-container: runs as $user, not nobody" >&2; exit 1; }
fi
kill -TERM "$mcp_pid"
status=0
for _ in $(seq 1 50); do kill -0 "$mcp_pid" 2>/dev/null || break; sleep 0.2; done
if kill -0 "$mcp_pid" 2>/dev/null; then echo "mcp-container: still running 10 s after SIGTERM" >&2; exit 1; fi
wait "$mcp_pid" || status=$?
mcp_pid=""
[ "$status" = 0 ] || { cat "$work/mcp.log" >&2; echo "mcp-container: exit status $status after SIGTERM" >&2; exit 1; }
grep -q "shutting down" "$work/mcp.log" || { cat "$work/mcp.log" >&2; exit 1; }
echo "mcp-container: SIGTERM → drained and exited 0" >&2
