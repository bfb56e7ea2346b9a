# StreamGate: the commands a contributor needs. `make help` lists them.
SHELL := /bin/bash
CARGO ?= cargo
export PATH := $(CURDIR)/.tools/bin:$(PATH)

.PHONY: help setup build release test check fmt clippy demo contracts bench-transfer bench-transcode bench-gateway bench-access clean

help:
	@echo "make demo            start the local network with a demo video and print the links that play"
	@echo "make test            install what is needed; rustfmt check, clippy -D warnings, build, every test (what CI runs)"
	@echo "make check           the same as make test"
	@echo "make build           debug build of every binary"
	@echo "make bench-transfer  node-to-node blob transfer vs. bare iroh-blobs (release build)"
	@echo "make bench-transcode the default ladder of 60 s 1080p vs. the same ffmpeg command"
	@echo "make bench-gateway   hot-segment serving vs. nginx, measured with wrk"
	@echo "make bench-access    sign-in verifications per second, cached and uncached ownership checks"
	@echo "make contracts       rebuild the Solidity artifacts the Rust bindings are generated from"
	@echo "make setup           install Debian and npm dependencies (idempotent)"

setup:
	@./scripts/setup.sh

build: setup
	$(CARGO) build --workspace --bins

release: setup
	$(CARGO) build --workspace --bins --release

# Formatting and lints first (they fail fast), then the end-to-end tests, which start the
# binaries as real processes, so those are built first.
test: fmt clippy build
	./scripts/contracts.sh test
	$(CARGO) test --workspace --no-fail-fast

contracts: setup
	./scripts/contracts.sh artifacts

fmt:
	$(CARGO) fmt --all -- --check

clippy: setup
	$(CARGO) clippy --workspace --all-targets -- -D warnings

check: test

demo: release
	./target/release/streamgate-testnet up

bench-transfer: release
	./target/release/bench-transfer

bench-transcode: release
	./target/release/bench-transcode

bench-gateway: release
	./target/release/bench-gateway

bench-access: release
	./target/release/bench-access

clean:
	$(CARGO) clean
