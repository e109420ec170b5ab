# TeeMate platform: an OpenWhisk-compatible confidential serverless invoker.
# `make help` lists the targets. The two that matter for a newcomer: `make run` and `make test`.

SHELL      := /bin/bash
GO         ?= go
BIN        := $(CURDIR)/bin
STATE      ?= $(CURDIR)/.state
GOFLAGS    ?=
# Timing and tests must not pay for the machine's extra CA bundle on every Node start (~30 ms).
unexport NODE_EXTRA_CA_CERTS

GO_BINARIES := invoker controller-adapter bench

.DEFAULT_GOAL := help

# Component fragments: function images (deploy/images) and the benchmark (bench).
-include deploy/images/images.mk
-include bench/bench.mk

.PHONY: help
help: ## List the targets with what they do
	@awk 'BEGIN{FS=":.*## "} /^[a-zA-Z_-]+:.*## /{printf "  \033[1m%-14s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: deps
deps: ## Install what builds and tests need (apt packages, npm modules, Go modules); idempotent
	@deploy/dev/install-deps.sh

.PHONY: build
build: ## Build every binary into bin/ and the Node isolate addon
	@mkdir -p $(BIN)
	@for b in $(GO_BINARIES); do \
	  pkg=$$(find . -path "*/cmd/$$b" -type d -not -path "./node_modules/*" | head -1); \
	  [ -n "$$pkg" ] || continue; \
	  CGO_ENABLED=0 $(GO) build $(GOFLAGS) -o $(BIN)/$$b $$pkg || exit 1; \
	done
	@[ ! -f node-isolate-patch/Makefile ] || $(MAKE) --no-print-directory -C node-isolate-patch
	@$(MAKE) --no-print-directory $(BIN)/teemate-confine
	@$(MAKE) --no-print-directory -s -C shim BIN=$(BIN)

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

.PHONY: lint
lint: ## go vet and the gofmt check
	$(GO) vet ./...
	@out=$$(gofmt -l $$(git ls-files -co --exclude-standard '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

.PHONY: test
test: deps build lint ## Install what is needed, then run every test (race detector on the Go tests)
	$(GO) test -race -count=1 ./...
	@for d in enclave-runtime node-isolate-patch functions; do \
	  if ls $$d/test/*.test.js >/dev/null 2>&1; then echo "node --test $$d"; (cd $$d && node --test test/) || exit 1; fi; \
	done
	@[ ! -f kmod/Makefile ] || $(MAKE) --no-print-directory -C kmod vm-test

.PHONY: clean
clean: ## Remove build outputs (keeps .state)
	rm -rf $(BIN)
	@[ ! -f node-isolate-patch/Makefile ] || $(MAKE) --no-print-directory -C node-isolate-patch clean
	@[ ! -f kmod/Makefile ] || $(MAKE) --no-print-directory -C kmod clean
