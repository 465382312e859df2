# Sourced by the scripts that test against a running `calseta dev` (schemathesis.sh, mcp-test.sh,
# mcp-container.sh): one way to start it and wait for it.
#
#   start_dev_stack --port 0        # arguments go to `calseta dev`
#     uses dev_work when the caller made it already; sets dev_key (a fresh admin key, passed by environment, never argv), dev_work (a temp
#     folder: the state lives in $dev_work/dev, the log in $dev_work/dev.log), dev_pid and
#     dev_ready (the ready line); exits with the log when the stack dies before it is ready.
#   stop_dev_stack                  # SIGINT, wait up to 20 s, remove the temp folder
# Needs repo_root, and VENV for Python. Builds the CLI first.

start_dev_stack() {
  cargo build -p calseta-cli --locked -q
  local bin="${CARGO_TARGET_DIR:-$repo_root/target}/debug/calseta"
  dev_key="cai_$("$VENV/bin/python" -c 'import secrets, base64; print(base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("="))')"
  dev_work="${dev_work:-$(mktemp -d)}"
  RUST_LOG=warn CALSETA_NO_DEMO=true CALSETA_ADMIN_KEY="$dev_key" \
    "$bin" dev --mcp-port 0 --data-dir "$dev_work/dev" "$@" >"$dev_work/dev.log" 2>&1 &
  dev_pid=$!
  for _ in $(seq 1 300); do
    if grep -q '^calseta dev ready' "$dev_work/dev.log" 2>/dev/null; then break; fi
    if ! kill -0 "$dev_pid" 2>/dev/null; then cat "$dev_work/dev.log" >&2; exit 1; fi
    sleep 0.2
  done
  dev_ready="$(grep '^calseta dev ready' "$dev_work/dev.log")" \
    || { cat "$dev_work/dev.log" >&2; echo "calseta dev was not ready within 60 s" >&2; exit 1; }
}

stop_dev_stack() {
  [ -n "${dev_pid:-}" ] && kill -INT "$dev_pid" 2>/dev/null || true
  for _ in $(seq 1 100); do kill -0 "${dev_pid:-0}" 2>/dev/null || break; sleep 0.2; done
  [ -n "${dev_work:-}" ] && rm -rf "$dev_work"
  return 0
}
