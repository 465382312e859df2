# Shortcuts; the scripts are the source of truth.
.PHONY: dev test build lambda-build lint fmt

dev:
	./scripts/dev

test:
	./scripts/test

build:
	cargo build --workspace --release --locked

# Every Lambda binary, arm64 (the template's architecture). Needs cargo-lambda (pip install cargo-lambda).
lambda-build:
	cargo lambda build --release --arm64 --locked $(patsubst functions/%/,-p %,$(wildcard functions/*/))

lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets --locked -- -D warnings
	./scripts/lint-template.sh

fmt:
	cargo fmt --all
