# Shortcuts; the scripts are the source of truth.
.PHONY: dev test build lambda-build lint fmt

# functions/mcp (when present) is the MCP container, not a Lambda.
LAMBDA_PACKAGES := $(patsubst functions/%/,-p %,$(filter-out functions/mcp/,$(wildcard functions/*/)))
LAMBDA_TARGET := $(or $(CARGO_TARGET_DIR),target)/lambda

dev:
	./scripts/dev

test:
	./scripts/test

build:
	cargo build --workspace --release --locked

# Every Lambda binary, arm64 (the template's architecture). Needs cargo-lambda (pip install cargo-lambda).
lambda-build:
	cargo lambda build --release --arm64 --locked $(LAMBDA_PACKAGES)

# `sam build` (BuildMethod: makefile, build_in_source in samconfig.toml) calls
# build-<LogicalId> once per function. Each call runs the same one cargo-lambda build of every
# function - the first compiles, the others find it fresh in seconds - and copies its binary.
# SKIP_LAMBDA_BUILD=1 only copies (CI and `sam build` after `make lambda-build`).
build-%Function:
	@[ -n "$(ARTIFACTS_DIR)" ] || { echo "ARTIFACTS_DIR is set by sam build" >&2; exit 1; }
	[ "$(SKIP_LAMBDA_BUILD)" = 1 ] || cargo lambda build --release --arm64 --locked $(LAMBDA_PACKAGES)
	cp "$(LAMBDA_TARGET)/$(shell echo '$*' | tr A-Z a-z)/bootstrap" "$(ARTIFACTS_DIR)/bootstrap"

lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets --locked -- -D warnings
	./scripts/lint-template.sh

fmt:
	cargo fmt --all
