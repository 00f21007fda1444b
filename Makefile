# One entry point for building, checking and testing podid. CI runs `make ci`.
#
#   make sandbox   the seed's walkthrough on real nodes built here: podid-sandbox (ARGS="--mode managed --keep")
#   make test      install test prerequisites, build the images, then run every test
#   make images    podid's container images without Docker or a registry (target/images)
#   make check     formatting and lints, warnings denied
#   make ci        check + test + fuzz-ci (what .ci/run calls)
#   make crds      regenerate deploy/crds from the Rust types
#   make deploy    regenerate the kustomize tree under deploy/ from `podid install`
#   make bench     the benchmark suite (docs/benchmarks.md; ARGS=--quick for a smoke run)
#   make fuzz      every cargo-fuzz target for FUZZ_SECS seconds (default 60; docs/fuzzing.md)
#   make model     the controller's model-based test with MODEL_SEQS sequences (default 500; CI runs 12)

SHELL := /bin/bash
CARGO ?= cargo
VENV ?= .venv

.PHONY: sandbox test test-deps test-rust test-python check fmt clippy ci crds deploy build bench fuzz fuzz-ci model

build:
	$(CARGO) build --workspace --all-targets

sandbox: test-deps images
	$(CARGO) build --workspace --bins
	target/debug/podid-sandbox $(ARGS)

test-deps:
	scripts/test-deps.sh

test: test-deps images test-rust test-python

test-rust:
	# Real-node tests run the workspace's binaries (podid, podid-forward, podid-node-init) and the
	# images of `make images`: build them first.
	$(CARGO) build --workspace --bins
	$(CARGO) test --workspace --no-fail-fast

test-python:
	@if [ -d crates/emulator/tests/python ]; then \
	  $(CARGO) build --workspace --bins && \
	  $(VENV)/bin/python -m pytest -q crates/emulator/tests/python; \
	fi

check: fmt clippy

fmt:
	$(CARGO) fmt --all -- --check

clippy:
	$(CARGO) clippy --workspace --all-targets -- -D warnings

ci: check test fuzz-ci

crds:
	$(CARGO) run -q -p podid-api --example crdgen > deploy/crds/aadpodidentity.k8s.io.yaml

deploy: crds
	$(CARGO) run -q -p podid-cli --example deploygen -- deploy

MODEL_SEQS ?= 500
MODEL_PARALLEL ?= 4
model: test-deps
	MODEL_SEQS=$(MODEL_SEQS) MODEL_PARALLEL=$(MODEL_PARALLEL) RUST_LOG=$${RUST_LOG:-warn} \
	  $(CARGO) test -p podid-mic --test model -- --nocapture

FUZZ_SECS ?= 60
fuzz:
	FUZZ_SECS=$(FUZZ_SECS) fuzz/run.sh

# The bounded run CI does: 20 s per target.
fuzz-ci: test-deps
	FUZZ_SECS=20 fuzz/run.sh

# The benchmark suite: every bench side by side, writes docs/benchmarks.md and docs/img/*.svg.
# `make bench ARGS=--quick` is a smoke run (report under target/bench/). Soak: docs/soak.md.
bench:
	$(CARGO) run --release -q -p podid-bench -- run $(ARGS)

# podid's container images without Docker or a registry (docs/install.md, "Images"): release
# binaries + Debian base layers (mmdebstrap, cached under $PODID_CACHE) -> target/images/*.tar
# and target/images/index.json. ARGS="--only nmi", ARGS=--refresh-bases.
.PHONY: images
images:
	$(CARGO) run -q -p podid-images -- build $(ARGS)
