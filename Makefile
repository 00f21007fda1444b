# One entry point for building, checking and testing podid. CI runs `make ci`.
#
#   make sandbox   start the local sandbox (installs its prerequisites first)
#   make test      install test prerequisites, then run every test
#   make check     formatting and lints, warnings denied
#   make ci        check + test (what .ci/run calls)
#   make crds      regenerate deploy/crds from the Rust types

SHELL := /bin/bash
CARGO ?= cargo
VENV ?= .venv

.PHONY: sandbox test test-deps test-rust test-python check fmt clippy ci crds build bench

build:
	$(CARGO) build --workspace --all-targets

sandbox: test-deps
	$(CARGO) run -p podid-testkit --bin podid-cluster -- $(ARGS)

test-deps:
	scripts/test-deps.sh

test: test-deps test-rust test-python

test-rust:
	$(CARGO) test --workspace --no-fail-fast

test-python:
	@if [ -d crates/emulator/tests/python ]; then \
	  $(CARGO) build --workspace --all-targets && \
	  $(VENV)/bin/python -m pytest -q crates/emulator/tests/python; \
	fi

check: fmt clippy

fmt:
	$(CARGO) fmt --all -- --check

clippy:
	$(CARGO) clippy --workspace --all-targets -- -D warnings

ci: check test

crds:
	$(CARGO) run -q -p podid-api --example crdgen > deploy/crds/aadpodidentity.k8s.io.yaml

bench:
	@echo "benchmarks: see docs/benchmarks.md"
