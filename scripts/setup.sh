# Sourced by scripts/dev and scripts/test: installs what the local stack and the tests need on a
# fresh Debian/Ubuntu machine, and nothing when it is already there.
#   - PostgreSQL server binaries (the local stack and tests start throwaway clusters from them)
#   - a Python venv with moto (real SQS API for tests) and cfn-lint (template lint)
#   - cargo-lambda in that venv (ensure_cargo_lambda: the Lambda-mode local stack and its test)
#   - a second venv with the template policy tools: checkov, aws-sam-cli (sam validate --lint,
#     sam build), cfn-lint - separate because aws-sam-cli pins boto3/cfn-lint versions moto
#     must not inherit
# CALSETA_VENV overrides the venv location (CI keeps it in a cache outside the clone);
# CALSETA_POLICY_VENV the policy tools' (default: "$CALSETA_VENV-policy").

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${CALSETA_VENV:-$repo_root/.venv}"
POLICY_VENV="${CALSETA_POLICY_VENV:-$VENV-policy}"

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"
  elif command -v sudo >/dev/null 2>&1; then sudo "$@"
  else echo "setup: need root to run: $*" >&2; return 1
  fi
}

apt_install() {
  echo "setup: installing $* (apt-get)" >&2
  as_root apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

have_postgres_server() {
  [ -n "${PG_BIN_DIR:-}" ] && [ -x "$PG_BIN_DIR/initdb" ] && return 0
  command -v pg_config >/dev/null 2>&1 && [ -x "$(pg_config --bindir)/initdb" ] && return 0
  ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && return 0
  command -v initdb >/dev/null 2>&1
}

ensure_postgres() {
  [ -n "${DATABASE_URL:-}" ] && return 0
  if ! have_postgres_server; then
    apt_install postgresql
    # Debian's package starts a system cluster we do not use; stop it so it holds no port.
    as_root sh -c 'command -v pg_ctlcluster >/dev/null && for v in /etc/postgresql/*/main; do [ -d "$v" ] && pg_ctlcluster "$(basename "$(dirname "$v")")" main stop 2>/dev/null; done; true'
  fi
  # Postgres refuses to run as root; as root we run it as the `postgres` user.
  if [ "$(id -u)" = 0 ] && ! id postgres >/dev/null 2>&1; then
    useradd --system --no-create-home --shell /usr/sbin/nologin postgres
  fi
}

ensure_venv() {
  if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV" 2>/dev/null || { apt_install python3-venv && python3 -m venv "$VENV"; }
  fi
  if [ ! -x "$VENV/bin/moto_server" ] || [ ! -x "$VENV/bin/cfn-lint" ] \
      || ! "$VENV/bin/python" -c 'import mcp, jsonschema' 2>/dev/null; then
    echo "setup: installing moto[server], cfn-lint and the MCP Python SDK into $VENV" >&2
    "$VENV/bin/pip" install -q --disable-pip-version-check 'moto[server]>=5.1,<6' 'cfn-lint>=1.30,<2' \
      'mcp>=2.3,<3' 'jsonschema>=4,<5'
  fi
  export MOTO_SERVER="$VENV/bin/moto_server"
}

ensure_policy_venv() {
  if [ ! -x "$POLICY_VENV/bin/python" ]; then
    python3 -m venv "$POLICY_VENV" 2>/dev/null || { apt_install python3-venv && python3 -m venv "$POLICY_VENV"; }
  fi
  if [ ! -x "$POLICY_VENV/bin/checkov" ] || [ ! -x "$POLICY_VENV/bin/sam" ] || [ ! -x "$POLICY_VENV/bin/cfn-lint" ]; then
    echo "setup: installing checkov, aws-sam-cli and cfn-lint into $POLICY_VENV" >&2
    "$POLICY_VENV/bin/pip" install -q --disable-pip-version-check 'checkov>=3.2,<4' 'aws-sam-cli>=1.120,<2' 'cfn-lint>=1.30,<2'
  fi
}

ensure_cargo_lambda() {
  ensure_venv
  if [ ! -x "$VENV/bin/cargo-lambda" ]; then
    echo "setup: installing cargo-lambda into $VENV" >&2
    "$VENV/bin/pip" install -q --disable-pip-version-check 'cargo-lambda>=1.8,<2'
  fi
  export CARGO_LAMBDA="$VENV/bin/cargo-lambda"
}

# The directory cargo builds into (honours CARGO_TARGET_DIR and .cargo/config).
cargo_target_dir() {
  cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])'
}
