#!/usr/bin/env bash
# Policy checks of the deployment templates. Fails on any finding:
#   1. cfn-lint on template.yaml (errors and warnings)
#   2. sam validate --lint (offline: SAM transform locally, then cfn-lint on the result)
#   3. checkov on template.yaml: every accepted finding is skipped in the template itself
#      (Metadata.checkov.skip with a one-line comment), so any failure here is new
# The CDK app's template is checked by scripts/cdk-check.sh (synth, cfn-lint, parity).
#
#   scripts/lint-template.sh
#   VENV=/path/to/venv scripts/lint-template.sh   # look for the tools in $VENV/bin first
#
# Install the tools with scripts/setup.sh (ensure_policy_venv) or:
#   pip install cfn-lint aws-sam-cli 'checkov>=3.2,<4'
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

need() {
  find_tool "$1" || { echo "lint-template: $1 not found on PATH or in \$VENV/bin ($2)" >&2; exit 127; }
}

cfn_lint="$(need cfn-lint 'pip install cfn-lint')"
sam="$(need sam 'pip install aws-sam-cli')"
checkov="$(need checkov "pip install 'checkov>=3.2,<4'")"

echo "lint-template: $("$cfn_lint" --version) template.yaml"
"$cfn_lint" template.yaml
echo "lint-template: cfn-lint clean"

SAM_CLI_TELEMETRY=0 "$sam" validate --lint --template-file template.yaml \
  --region "${AWS_REGION:-${AWS_DEFAULT_REGION:-us-east-1}}"

echo "lint-template: checkov $("$checkov" --version) template.yaml"
# --quiet prints failed checks only; the exit status is non-zero on any failure.
"$checkov" -f template.yaml --framework cloudformation --compact --quiet --skip-download
echo "lint-template: checkov clean (accepted findings are skipped with reasons in template.yaml)"
