# Polis: build, demo, test and benchmark.
#
# Every cargo invocation uses --release, so that only one profile is ever
# built (the build machines have 2 cores).
#
#   make demo      install deps, build, run a busybox container with polis-runc: by hand, through containerd, through
#                  polisd (docker and polis)
#   make test      install deps, build, static probe, tests, fmt, clippy, shellcheck
#   make bench     hyperfine: polis-runc vs runc (hack/bench; BENCH_FLAGS=--quick|--record)
#
# RUNTIME=/path/to/runtime runs `demo` and `bench` with another runc-compatible
# binary instead of target/release/polis-runc (and then skips the build).

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := build
.DELETE_ON_ERROR:
# Steps run in the order written, also under -j (cargo serialises builds anyway).
.NOTPARALLEL:

CARGO ?= cargo
# rustup's default location, for shells (CI) whose PATH lacks it.
export PATH := $(PATH):$(HOME)/.cargo/bin

# libseccomp is linked statically into every binary (libseccomp-sys reads these), so that
# polis-runc can be a static executable. Every cargo command here sees the same values:
# a change would rebuild libseccomp-sys and everything above it. The path is looked up when a
# recipe runs, after install-deps.
export LIBSECCOMP_LINK_TYPE := static
export LIBSECCOMP_LIB_PATH = $(shell dirname "$$(gcc -print-file-name=libseccomp.a 2>/dev/null)")

POLIS_RUNC_BIN := $(CURDIR)/target/release/polis-runc
SHIM_BIN       := $(CURDIR)/target/release/containerd-shim-polis-v2
PROBE_BIN      := $(CURDIR)/target/polis-probe
RUNTIME        ?= $(POLIS_RUNC_BIN)

DEMO_BUNDLE      := $(CURDIR)/target/demo-bundle
DEMO_ROOT        := $(CURDIR)/target/demo-root
DEMO_ID          := polis-demo
DEMO_CTRD        := $(CURDIR)/target/demo-containerd
DEMO_SCRIPT      := echo Hello from a Polis container; uname -n
DEMO_POLISD      := $(CURDIR)/target/demo-polisd
DEMO_POLISD_SCRIPT := echo Hello from a Polis container, through polisd and the docker CLI; cat /etc/hostname
DEMO_POLIS_SCRIPT := echo Hello from a Polis container, through polisd and the polis CLI; cat /etc/hostname
DEMO_CTRD_SCRIPT := echo Hello from a Polis container, through containerd-shim-polis-v2; cat /proc/1/cgroup | grep memory

BENCH_FLAGS ?=

# Build polis-runc first only when it is the runtime being used.
ifeq ($(RUNTIME),$(POLIS_RUNC_BIN))
RUNTIME_BUILD := build
else
RUNTIME_BUILD :=
endif

.PHONY: help install-deps build probe demo test cargo-test lint bench clean

help:
	@sed -n '3,14s/^# \{0,1\}//p' $(firstword $(MAKEFILE_LIST))

install-deps:
	hack/install-deps

# polis-runc is a static PIE (glibc and libseccomp inside, still randomised by ASLR): `create`,
# `run` and `exec` start it twice (the CVE-2019-5736 re-exec), and without the dynamic loader a
# start is faster and smaller (docs/BENCHMARKS.md, "What changed between the 20:28 and 22:05 runs"). `cargo test`
# leaves target/release/polis-runc alone (runtime/ has no integration tests of its own).
#
# containerd-shim-polis-v2 is a static PIE too: it stays resident beside every container, and
# without libc.so and the loader mapped its VmRSS is smaller (docs/BENCHMARKS.md, "containerd-shim-polis-v2:
# what the numbers above say").
build:
	$(CARGO) build --release --workspace --exclude polis-runc --exclude polis-shim
	$(CARGO) build --release -p polis-client --examples
	$(CARGO) rustc --release -p polis-runc --bin polis-runc -- -C target-feature=+crt-static
	$(CARGO) rustc --release -p polis-shim --bin containerd-shim-polis-v2 -- -C target-feature=+crt-static
	@for bin in $(POLIS_RUNC_BIN) $(SHIM_BIN); do \
		if readelf -l $$bin | grep -q INTERP; then \
			echo "build: $$bin is dynamically linked" >&2; exit 1; \
		fi; \
	done

# The static polis-probe that conformance tests run inside containers. Built
# with crt-static, then copied out of target/release, where `cargo test`
# rebuilds the bin target without crt-static. Skipped while the workspace has
# no polis-integration package with that binary.
probe:
	@if $(CARGO) metadata --no-deps --format-version 1 --offline 2>/dev/null \
		| jq -e '.packages[] | select(.name == "polis-integration") | .targets[] | select(.name == "polis-probe" and (.kind | index("bin")))' >/dev/null; then \
		echo "$(CARGO) rustc --release -p polis-integration --bin polis-probe -- -C target-feature=+crt-static"; \
		$(CARGO) rustc --release -p polis-integration --bin polis-probe -- -C target-feature=+crt-static; \
		if readelf -l target/release/polis-probe | grep -q INTERP; then \
			echo "probe: target/release/polis-probe is dynamically linked" >&2; exit 1; \
		fi; \
		cp target/release/polis-probe $(PROBE_BIN).tmp && mv $(PROBE_BIN).tmp $(PROBE_BIN); \
		echo "probe: $(PROBE_BIN) (static)"; \
	else \
		echo "probe: no polis-probe binary in the workspace yet (integration/); skipped"; \
	fi

demo: install-deps $(RUNTIME_BUILD)
	@test -x "$(RUNTIME)" || { echo "demo: $(RUNTIME) is not an executable" >&2; exit 1; }
	POLIS_RUNC="$(RUNTIME)" hack/make-busybox-bundle --hostname polis-demo --sh "$(DEMO_SCRIPT)" $(DEMO_BUNDLE)
	@# A container left by an interrupted demo would make `run` fail.
	@"$(RUNTIME)" --root $(DEMO_ROOT) delete --force $(DEMO_ID) >/dev/null 2>&1 || true
	@echo "==> $(notdir $(RUNTIME)) --root $(DEMO_ROOT) run --bundle $(DEMO_BUNDLE) $(DEMO_ID)"
	@"$(RUNTIME)" --root $(DEMO_ROOT) run --bundle $(DEMO_BUNDLE) $(DEMO_ID)
ifneq ($(RUNTIME_BUILD),)
	@# The same container through containerd and containerd-shim-polis-v2, on a
	@# private containerd (its own socket and state, stopped and removed after).
	@hack/private-containerd stop $(DEMO_CTRD) >/dev/null 2>&1 || true
	@hack/private-containerd start $(DEMO_CTRD)
	@trap 'hack/private-containerd stop $(DEMO_CTRD)' EXIT; \
	hack/private-containerd import-busybox $(DEMO_CTRD); \
	echo "==> ctr run --runtime io.containerd.polis.v2 --rm localhost/polis-busybox:latest $(DEMO_ID)"; \
	hack/private-containerd ctr $(DEMO_CTRD) run --runtime io.containerd.polis.v2 --rm \
		localhost/polis-busybox:latest $(DEMO_ID) sh -c "$(DEMO_CTRD_SCRIPT)"
	@# And through polisd with Docker's own CLI: a private polisd and a loopback
	@# registry holding the busybox image, stopped and removed after.
	@hack/polisd-demo stop $(DEMO_POLISD) >/dev/null 2>&1 || true
	@trap 'hack/polisd-demo stop $(DEMO_POLISD)' EXIT; \
	hack/polisd-demo start $(DEMO_POLISD); \
	image=$$(hack/polisd-demo image $(DEMO_POLISD)); \
	echo "==> docker -H unix://$(DEMO_POLISD)/run/polis.sock run --rm $$image"; \
	hack/polisd-demo docker $(DEMO_POLISD) run --rm $$image sh -c "$(DEMO_POLISD_SCRIPT)"; \
	echo "==> polis -H $(DEMO_POLISD)/run/polis-grpc.sock run --rm $$image"; \
	hack/polisd-demo polis $(DEMO_POLISD) run --rm $$image sh -c "$(DEMO_POLIS_SCRIPT)"
endif

test: install-deps build probe cargo-test lint

# POLIS_PROBE is passed only when `probe` made the binary (the recipe is
# expanded after the prerequisites ran). --no-fail-fast: every test binary
# runs and reports, and the exit status is still non-zero on any failure.
# POLIS_REQUIRE_PEERS=1: a test whose peer (runc, containerd, a registry, ...)
# is missing fails here, as under CI; a bare `cargo test` only prints a notice.
cargo-test: build probe
	POLIS_REQUIRE_PEERS=1 POLIS_RUNC=$(POLIS_RUNC_BIN) $(if $(wildcard $(PROBE_BIN)),POLIS_PROBE=$(PROBE_BIN)) \
		$(CARGO) test --release --workspace --no-fail-fast -- --test-threads=2

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --release --workspace --all-targets -- -D warnings
	@scripts=$$(grep -lE '^#!(/usr/bin/env (ba)?sh|/bin/(ba)?sh)' $$(find hack .ci -maxdepth 1 -type f) || true); \
	if command -v shellcheck >/dev/null; then \
		echo "shellcheck $$scripts" | tr '\n' ' '; echo; \
		shellcheck $$scripts; \
	else \
		echo "lint: shellcheck is missing (hack/install-deps)" >&2; exit 1; \
	fi

bench: $(RUNTIME_BUILD)
	POLIS_RUNC="$(RUNTIME)" hack/bench $(BENCH_FLAGS)

clean:
	@if [ -x "$(RUNTIME)" ] && [ -d $(DEMO_ROOT) ]; then \
		"$(RUNTIME)" --root $(DEMO_ROOT) delete --force $(DEMO_ID) >/dev/null 2>&1 || true; \
	fi
	$(CARGO) clean
