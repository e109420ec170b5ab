# TeeMate platform: an OpenWhisk-compatible confidential serverless invoker.
# `make help` lists the targets. The two that matter for a newcomer: `make run` and `make test`.

SHELL      := /bin/bash
GO         ?= go
BIN        := $(CURDIR)/bin
# Lint tools (golangci-lint, checkpatch.pl), installed by `make deps` (deploy/dev/install-deps.sh).
TOOLS      := $(BIN)/tools
STATE      ?= $(CURDIR)/.state
GOFLAGS    ?=
# Timing and tests must not pay for the machine's extra CA bundle on every Node start (~30 ms).
unexport NODE_EXTRA_CA_CERTS

GO_BINARIES := invoker controller-adapter bench teemate

.DEFAULT_GOAL := help

# Component fragments: function images (deploy/images) and the benchmark (bench).
-include deploy/images/images.mk
-include bench/bench.mk

.PHONY: help
help: ## List the targets with what they do
	@awk 'BEGIN{FS=":.*## "} /^[a-zA-Z_-]+:.*## /{printf "  \033[1m%-14s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: deps
deps: ## Install what builds, tests and lint need (apt packages, npm and Go modules, lint tools); idempotent
	@TOOLS=$(TOOLS) deploy/dev/install-deps.sh

.PHONY: build
build: ## Build every binary into bin/ and the Node isolate addon
	@mkdir -p $(BIN)
	@for b in $(GO_BINARIES); do \
	  pkg=$$(find . -path "*/cmd/$$b" -type d -not -path "./node_modules/*" | head -1); \
	  [ -n "$$pkg" ] || continue; \
	  CGO_ENABLED=0 $(GO) build $(GOFLAGS) -o $(BIN)/$$b $$pkg || exit 1; \
	done
	@[ ! -f node-isolate-patch/Makefile ] || $(MAKE) --no-print-directory -C node-isolate-patch
	@$(MAKE) --no-print-directory $(RUNTIME_MODULES)
	@$(MAKE) --no-print-directory $(BIN)/teemate-confine
	@$(MAKE) --no-print-directory -s -C shim BIN=$(BIN)

# The npm modules the enclave runtime offers every action, as OpenWhisk's Node.js runtime does
# (enclave-runtime/modules: the openwhisk client, pinned with its dependencies by the committed
# package-lock.json). Fetched from the npm registry into node_modules/, never committed; no
# install scripts run.
RUNTIME_MODULES := enclave-runtime/modules/node_modules/.package-lock.json
$(RUNTIME_MODULES): enclave-runtime/modules/package.json enclave-runtime/modules/package-lock.json
	@cd enclave-runtime/modules && npm ci --omit=dev --ignore-scripts --no-audit --no-fund --loglevel=error \
	  || { echo "make: npm ci in enclave-runtime/modules failed: actions would have no require('openwhisk')"; exit 1; }

# The static programs inside every sandbox (see shim/): the shim, the strawman's launcher and the
# sandbox start stub, which is on every activation's path.
STUB_SRC := shim/start/teemate-start.c
$(BIN)/teemate-start: $(STUB_SRC)
	@$(MAKE) --no-print-directory -s -C shim BIN=$(BIN) $@

# The owner's confinement launcher (see invoker/internal/enclave/confine): static, so it needs
# nothing from the root it builds; its seccomp list is shared with the lockdown addon.
CONFINE_SRC := invoker/internal/enclave/confine/launcher/teemate-confine.c
# Written under a temporary name and renamed: test binaries of several packages may build it at once.
$(BIN)/teemate-confine: $(CONFINE_SRC) node-isolate-patch/src/seccomp_policy.h
	@mkdir -p $(BIN)
	gcc -static -O2 -Wall -Wextra -Werror -Inode-isolate-patch/src -o $@.$$$$.tmp $< && mv -f $@.$$$$.tmp $@

.PHONY: run
run: build images ## Start the whole platform on this machine (embedded Kafka, controller-adapter on :3233, one invoker)
	$(BIN)/controller-adapter --standalone --port 3233 --data-dir $(STATE)

# C directories held to .clang-format and to the kernel's checkpatch.pl: the module, and the static
# programs that run inside every sandbox (shim/: the shim, its JSON code, the start stub, the
# strawman's launcher), which checkpatch reads as user-space programs. The confinement launcher
# is held to clang-format only: it is security code, reformatted as a whitespace-only change, and
# checkpatch's remaining asks there (blank lines after declarations, sizeof(x), comment closings)
# wait for a change that reviews it as code.
C_FORMAT_DIRS          := kmod shim invoker/internal/enclave/confine/launcher
CHECKPATCH_KERNEL_DIRS := kmod
CHECKPATCH_USER_DIRS   := shim
# checkpatch.pl comes from Debian's linux-source-6.1 (see deploy/dev/install-deps.sh). Types that do
# not apply: the module builds against more than one kernel (LINUX_VERSION_CODE); user-space
# programs and the selftests read shared mappings through volatile and parse with sscanf
# (kstrto* is kernel-only), cannot use the kernel's own attribute macros (__printf() and its kin
# come from the kernel's compiler_attributes.h; a user-space copy would take a reserved name), and
# carry no SPDX tag (the tag is the kernel tree's licence rule; kmod/ carries GPL-2.0 tags because
# the kernel requires them, the project's own programs declare no licence).
CHECKPATCH               := perl $(TOOLS)/checkpatch/checkpatch.pl --no-tree --terse --show-types --quiet
CHECKPATCH_KERNEL_IGNORE := LINUX_VERSION_CODE,CONSTANT_COMPARISON
CHECKPATCH_USER_IGNORE   := $(CHECKPATCH_KERNEL_IGNORE),VOLATILE,SSCANF_TO_KSTRTO,PREFER_DEFINED_ATTRIBUTE_MACRO,SPDX_LICENSE_TAG
# Tracked C files under the directories $(1); evaluated only when a recipe uses them.
c_files = $(if $(strip $(1)),$(shell git ls-files $(foreach d,$(1),'$(d)/*.[ch]')))
kernel_c = $(foreach f,$(call c_files,$(CHECKPATCH_KERNEL_DIRS)),$(if $(findstring /selftests/,$(f)),,$(f)))
user_c = $(foreach f,$(call c_files,$(CHECKPATCH_KERNEL_DIRS)),$(if $(findstring /selftests/,$(f)),$(f))) \
	$(call c_files,$(CHECKPATCH_USER_DIRS))
# Shell scripts: *.sh, and the files without an extension that start with a shell shebang
# (kmod/vm/init runs under busybox sh and is checked as POSIX sh).
shell_scripts = $(shell git ls-files '*.sh'; git ls-files | grep -vE '(^|/)[^/]+\.[^/]*$$' | while read -r f; do \
	[ -f "$$f" ] && head -n1 "$$f" | grep -qE '^.!.*(/|env )(ba|da)?sh( |$$)' && echo "$$f"; done)

.PHONY: lint
lint: ## Static checks: go vet, gofmt, golangci-lint (.golangci.yml), dropped errors, shellcheck, clang-format, checkpatch
	$(GO) vet ./...
	@out=$$(gofmt -l $$(git ls-files -co --exclude-standard '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	@[ -x $(TOOLS)/golangci-lint ] || { echo "lint: $(TOOLS)/golangci-lint is missing: make deps"; exit 1; }
	$(TOOLS)/golangci-lint run ./...
	$(GO) run ./internal/lintcheck/dropcheck ./...
	shellcheck -x $(shell_scripts)
	shellcheck -s sh kmod/vm/init
	clang-format --dry-run -Werror $(call c_files,$(C_FORMAT_DIRS))
	@[ -f $(TOOLS)/checkpatch/checkpatch.pl ] || { echo "lint: checkpatch.pl is missing: make deps (from Debian's linux-source-6.1)"; exit 1; }
	$(CHECKPATCH) --ignore $(CHECKPATCH_KERNEL_IGNORE) -f $(kernel_c)
	$(CHECKPATCH) --ignore $(CHECKPATCH_USER_IGNORE) -f $(user_c)

.PHONY: fmt
fmt: ## Format the Go code (gofmt) and the C directories of C_FORMAT_DIRS (clang-format)
	gofmt -w $$(git ls-files -co --exclude-standard '*.go')
	clang-format -i $(call c_files,$(C_FORMAT_DIRS))

.PHONY: test
test: deps build images lint ## Install what is needed, build the function images, then run every test (race detector on the Go tests)
	$(GO) test -race -count=1 ./...
	@for d in enclave-runtime node-isolate-patch functions controller-adapter/client/js; do \
	  if ls $$d/test/*.test.js >/dev/null 2>&1; then echo "node --test $$d"; (cd $$d && node --test test/) || exit 1; fi; \
	done
	@[ ! -f kmod/Makefile ] || $(MAKE) --no-print-directory -C kmod vm-test

# The fault suite (controller-adapter/test/fault): its short version runs with `make test` (go test ./...).
.PHONY: fault-test
fault-test: build ## Fault suite, long version: kill and disturb every part under load; rewrites docs/faults.md and docs/faults.json
	TEEMATE_FAULT_LONG=1 TEEMATE_FAULT_WRITE=1 TEEMATE_FAULT_COMMAND="make fault-test" \
	  $(GO) test -count=1 -timeout 60m -run TestFaults -v ./controller-adapter/test/fault/

.PHONY: clean
clean: ## Remove build outputs (keeps .state)
	rm -rf $(BIN)
	@[ ! -f node-isolate-patch/Makefile ] || $(MAKE) --no-print-directory -C node-isolate-patch clean
	@[ ! -f kmod/Makefile ] || $(MAKE) --no-print-directory -C kmod clean
