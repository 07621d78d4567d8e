# Cairn: `make run` boots the firmware under QEMU, `make test` runs every test. See README.md.
BOARD ?= qemu-aarch64-virt
BOARDS := $(notdir $(wildcard board/*))
TARGET = $(shell sed -n 's/^target = "\(.*\)"/\1/p' board/$(BOARD)/board.toml)
## FEATURES: cargo features of the firmware binary. The update test's "old" version is built from this tree with
## FEATURES=schema-2-only (settings schema 2, docs/updates.md); such a build goes to its own out/ folder and binary
## name, and shares target/ with the default build (only the crates the feature changes are compiled twice).
FEATURES ?=
comma := ,
FEATURE_SUFFIX = $(if $(FEATURES),-$(subst $(comma),-,$(FEATURES)))
OUT = out/$(BOARD)$(FEATURE_SUFFIX)
BIN = target/$(TARGET)/release/cairn$(FEATURE_SUFFIX)
IMAGE_INPUTS = $(shell find rootfs board/$(BOARD) scripts/image -type f 2>/dev/null)
# Firmware version and anti-rollback floor in the image's signed slot trailer, and in a bundle (VERSION, FLOOR:
# `make bundle VERSION=0.2.0` makes an update without changing the image's own slot).
IMAGE_VERSION ?= $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)
IMAGE_FLOOR ?= 0.1.0
VERSION ?= $(IMAGE_VERSION)
FLOOR ?= $(IMAGE_FLOOR)
# Signing: the development key unless a release build passes its own (keys/README.md).
CAIRN_SIGNING_KEY ?= keys/development.pk8
export CAIRN_TRUSTED_KEYS ?= keys/development.pub
# The host tool that seals slot A and writes bundles, built with the same FEATURES as the firmware so it records
# the settings schema of that build (SCHEMA_VERSION= overrides it).
BUNDLE_TOOL = target/debug/cairn-bundle$(FEATURE_SUFFIX)
SIGNING_ARGS = --key $(CAIRN_SIGNING_KEY) $(if $(SCHEMA_VERSION),--schema-version $(SCHEMA_VERSION))
export HTTP_PORT ?= 8080
export HTTPS_PORT ?= 8443
export SMB_PORT ?= 1445
export DISKS ?= 0
export NET ?= user

.PHONY: all bootstrap build bundle-tool bundle image images run test test-host test-artifacts test-e2e dev bench lint mutants clean clean-box lock-refresh

all: images

bootstrap:
	@scripts/bootstrap

## The cross-built multi-call binary for $(BOARD).
build: bootstrap
	cargo build --release --locked --target $(TARGET) -p cairn $(if $(FEATURES),--features $(FEATURES))
	$(if $(FEATURES),cp -p target/$(TARGET)/release/cairn $(BIN))

bundle-tool: bootstrap
	cargo build --locked -p cairn-firmware --bin cairn-bundle $(if $(FEATURES),--features $(FEATURES))
	$(if $(FEATURES),cp -p target/debug/cairn-bundle $(BUNDLE_TOOL))

## The flashable image for $(BOARD): out/$(BOARD)/cairn-$(BOARD)-<version>.img, its slot A sealed with its
## signed trailer (every time: cheap, and it follows IMAGE_VERSION, IMAGE_FLOOR and the key).
image: build bundle-tool
	@$(MAKE) --no-print-directory $(OUT)/manifest.json
	$(BUNDLE_TOOL) seal --build $(OUT) $(SIGNING_ARGS) --version $(IMAGE_VERSION) --floor $(IMAGE_FLOOR)

$(OUT)/manifest.json: $(BIN) $(IMAGE_INPUTS) Cargo.toml $(subst :, ,$(CAIRN_TRUSTED_KEYS))
	python3 scripts/image/mkimage.py $(BOARD) $(BIN) $(OUT)

## An update bundle from the same build outputs as the image: out/$(BOARD)/cairn-$(BOARD)-$(VERSION).cfw
bundle: image
	$(BUNDLE_TOOL) bundle --build $(OUT) $(SIGNING_ARGS) --version $(VERSION) --floor $(FLOOR) --out $(OUT)/cairn-$(BOARD)-$(VERSION).cfw

images:
	@for b in $(BOARDS); do $(MAKE) --no-print-directory image BOARD=$$b || exit 1; done

## Boots $(BOARD) with the serial console here and the dashboard on http://127.0.0.1:$(HTTP_PORT) and
## https://127.0.0.1:$(HTTPS_PORT).
run: image
	BOARD=$(BOARD) cargo run --quiet --release --locked -p cairn-qemu --bin cairn-run

## Every test: host unit and integration tests, then both images booted under QEMU.
test: bootstrap test-host images test-artifacts test-e2e

## What the update tests install, built once before them (they build what is missing when run alone): each
## board's update bundle at UPDATE_VERSION, and the aarch64 build at settings schema 2 that the update
## from "version 1" starts from.
UPDATE_VERSION = 0.2.0
test-artifacts:
	@for b in $(BOARDS); do $(MAKE) --no-print-directory bundle BOARD=$$b VERSION=$(UPDATE_VERSION) || exit 1; done
	@$(MAKE) --no-print-directory image BOARD=qemu-aarch64-virt FEATURES=schema-2-only

test-host:
	cargo test --locked --workspace --exclude cairn-e2e

## The QEMU scenarios, two binaries side by side and the timing-bound ones alone (scripts/e2e; E2E=name,... for
## some of them).
test-e2e:
	python3 scripts/e2e

## The daemon natively on this machine with a throw-away state directory, for work on the pages.
dev:
	@state=$$(mktemp -d); echo "state in $$state; dashboard on http://127.0.0.1:$(HTTP_PORT) and https://127.0.0.1:$(HTTPS_PORT)"; \
	cargo run --locked -p cairn -- daemon --listen 127.0.0.1:$(HTTP_PORT) --listen-tls 127.0.0.1:$(HTTPS_PORT) --state $$state --ctl $$state/ctl.sock --board board/$(BOARD)/board.toml --power none

## Prints the figures the issues ask for (boot time against a floor, sizes, memory).
bench: bootstrap images test-artifacts
	cargo build --release --locked -p cairn
	cargo run --release --locked -p cairn-e2e --bin cairn-bench-api
	cargo run --release --locked -p cairn-e2e --bin cairn-bench
	cargo run --release --locked -p cairn-e2e --bin cairn-bench-storage
	cargo run --release --locked -p cairn-e2e --bin cairn-bench-install
	cargo run --release --locked -p cairn-e2e --bin cairn-bench-store

lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

## Mutation testing of the host crates' rules (slow, so not part of `make test`): each surviving mutant is a
## change to the code that no test notices (a part with survivors does not stop the others). Reports under
## target/mutants/<part>/mutants.out/.
MUTANTS = cargo mutants --timeout 300 -j 1
mutants: bootstrap
	@command -v cargo-mutants >/dev/null || cargo install --locked cargo-mutants
	-$(MUTANTS) -p cairn-store -o target/mutants/store
	-$(MUTANTS) -p cairn-accounts -o target/mutants/accounts
	-$(MUTANTS) -p cairn-smb -o target/mutants/smb
	-$(MUTANTS) -p cairn-storage -f crates/cairn-storage/src/contents.rs -f crates/cairn-storage/src/md.rs -f crates/cairn-storage/src/volumes.rs -o target/mutants/storage
	-$(MUTANTS) -p cairn-api -f crates/cairn-api/src/auth.rs -f crates/cairn-api/src/throttle/mod.rs -f crates/cairn-api/src/throttle/ledger.rs -f crates/cairn-api/src/routes.rs -o target/mutants/api

## Pins the current Debian versions of rootfs/packages.toml into rootfs/packages.lock.
lock-refresh: bootstrap
	python3 scripts/image/packages.py refresh

clean-box:
	rm -rf out/*/box

clean:
	rm -rf out target
