#!/usr/bin/env bash
# Lints the SAM template. Fails on any cfn-lint finding (errors and warnings).
#
#   scripts/lint-template.sh            # cfn-lint, plus `sam validate --lint` when sam is installed
#   VENV=/path/to/venv scripts/lint-template.sh   # also look for the tools in $VENV/bin
#
# Install the tools with: pip install cfn-lint aws-sam-cli
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"

find_tool() {
  local name="$1"
  if [[ -n "${VENV:-}" && -x "${VENV}/bin/${name}" ]]; then
    printf '%s\n' "${VENV}/bin/${name}"
  elif command -v "$name" >/dev/null 2>&1; then
    command -v "$name"
  else
    return 1
  fi
}

if ! cfn_lint="$(find_tool cfn-lint)"; then
  echo "lint-template: cfn-lint not found on PATH or in \$VENV/bin (pip install cfn-lint)" >&2
  exit 127
fi

echo "lint-template: $("$cfn_lint" --version) template.yaml"
"$cfn_lint" template.yaml
echo "lint-template: cfn-lint clean"

if sam="$(find_tool sam)"; then
  # Offline: transforms the template locally and runs cfn-lint on the result.
  SAM_CLI_TELEMETRY=0 "$sam" validate --lint --template-file template.yaml \
    --region "${AWS_REGION:-${AWS_DEFAULT_REGION:-us-east-1}}"
else
  echo "lint-template: sam not found, skipped sam validate --lint"
fi
