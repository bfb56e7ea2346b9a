# StreamGate: the commands a contributor needs. `make help` lists them.
SHELL := /bin/bash
CARGO ?= cargo
export PATH := $(CURDIR)/.tools/bin:$(PATH)

.PHONY: help setup build release test check fmt clippy fuzz-check fuzz demo contracts bench-transfer bench-transcode bench-gateway bench-access bench-nat bench-workers gpu-check clean

help:
	@echo "make demo            start the local network with a demo video and print the links that play"
	@echo "make test            install what is needed; rustfmt check, clippy -D warnings, build, every test, fuzz-check (what CI runs)"
	@echo "make check           the same as make test"
	@echo "make build           debug build of every binary"
	@echo "make fuzz-check      build the fuzz targets (fuzz/) and run each for $(FUZZ_CHECK_SECONDS) s from the seeds; fails on a crash"
	@echo "make fuzz            run each fuzz target for FUZZ_SECONDS (now $(FUZZ_SECONDS)) s, keeping new inputs in fuzz/corpus/"
	@echo "make bench-transfer  node-to-node blob transfer vs. bare iroh-blobs (release build)"
	@echo "make bench-transcode the default ladder of 60 s 1080p vs. the same ffmpeg command"
	@echo "make bench-gateway   hot-segment serving vs. nginx, measured with wrk"
	@echo "make bench-access    sign-in verifications per second, cached and uncached ownership checks"
	@echo "make bench-nat       first byte and throughput of 64 MiB per path (direct, hole-punched, relayed) vs. loopback; needs root"
	@echo "make bench-workers   60 s 1080p: one node on one core vs. two workers on a core each; verification's CPU share"
	@echo "make gpu-check       on a GPU machine: the hardware probe and one hybrid job (NVDEC decode, x264 encode), verified"
	@echo "make contracts       rebuild the Solidity artifacts the Rust bindings are generated from"
	@echo "make setup           install Debian and npm dependencies (idempotent)"

setup:
	@./scripts/setup.sh

build: setup
	$(CARGO) build --workspace --bins

release: setup
	$(CARGO) build --workspace --bins --release

# Clippy, every warning an error, as the compiler of the workspace's own crates: the same
# lints `cargo clippy --all-targets` runs, but during the build, so a clean clone compiles
# each dependency once rather than once to check and again to build (a clean clone's run
# went from 26 to 23 minutes on a 2-core machine). CLIPPY_ARGS is how `cargo clippy` itself hands its arguments to clippy-driver.
LINTED := RUSTC_WORKSPACE_WRAPPER=clippy-driver CLIPPY_ARGS=-D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__

# Formatting first (it fails fast), then the linted build; the end-to-end tests start the
# binaries as real processes, so those are built before the tests run.
test: setup fmt
	$(LINTED) $(CARGO) build --workspace --bins
	./scripts/contracts.sh test
	$(LINTED) $(CARGO) test --workspace --no-fail-fast
	$(MAKE) fuzz-check

contracts: setup
	./scripts/contracts.sh artifacts

fmt:
	$(CARGO) fmt --all -- --check

clippy: setup
	$(CARGO) clippy --workspace --all-targets -- -D warnings

check: test

# Fuzzing with cargo-fuzz (libFuzzer): fuzz/ has a target for every decoder of outside input.
# Stable Rust has no sanitizers, hence -s none, which needs no nightly flags; cargo fuzz still
# builds in release with debug assertions and overflow checks. Each run starts from the
# committed seeds (fuzz/seeds/) and keeps what it finds in fuzz/corpus/; a crash (a panic or
# a failed assertion) leaves its input in fuzz/artifacts/ and fails the run, after the others.
FUZZ_CHECK_SECONDS ?= 10
FUZZ_SECONDS ?= 600
FUZZ_RUN = failed=""; \
	for target in $$($(CARGO) fuzz list); do \
	  mkdir -p fuzz/corpus/$$target; \
	  echo "fuzz: $$target for $(1) s"; \
	  $(CARGO) fuzz run -s none $$target fuzz/corpus/$$target fuzz/seeds/$$target -- \
	    -max_total_time=$(1) -timeout=10 || failed="$$failed $$target"; \
	done; \
	if [ -n "$$failed" ]; then echo "fuzz: crashed:$$failed (inputs in fuzz/artifacts/)"; exit 1; fi

fuzz-check: setup
	$(CARGO) fuzz build -s none
	$(call FUZZ_RUN,$(FUZZ_CHECK_SECONDS))

fuzz: setup
	$(CARGO) fuzz build -s none
	$(call FUZZ_RUN,$(FUZZ_SECONDS))

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

bench-nat: release
	./target/release/bench-nat

bench-workers: release
	./target/release/bench-workers

# On a GPU machine (the device tool lends one in some sessions): the probe and one hybrid
# chunk job, NVDEC decode and x264 encode, verified. Carry target/release/gpu-check and the
# FFmpeg libraries it links (ldd shows them) when the machine has no FFmpeg of its own.
gpu-check: release
	test -f target/gpu-check.mp4 || ffmpeg -v error -y -f lavfi -i testsrc2=size=1920x1080:rate=30:duration=10 -c:v libx264 -preset fast -pix_fmt yuv420p target/gpu-check.mp4
	./target/release/gpu-check target/gpu-check.mp4

clean:
	$(CARGO) clean
