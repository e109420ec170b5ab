# bench.mk: the bench targets, included by the top-level Makefile.
# `make bench` runs the quick profile (< 5 minutes on 2 cores); `make bench-full` the paper's set.
# Both measure containers (bin/bench's default sandbox, oci with runc), so they need the images.
BENCH_RESULTS ?= bench/results

.PHONY: bench
bench: build images ## Quick benchmark: 3 functions x teemate/native/strawman, JSON + report in bench/results/quick.*
	@mkdir -p $(BENCH_RESULTS)
	env -u NODE_EXTRA_CA_CERTS $(BIN)/bench --quick --out $(BENCH_RESULTS)/quick.json

.PHONY: bench-full
bench-full: build images ## Full benchmark: nine functions, small inputs, 50 samples, 3 repetitions (about an hour)
	@mkdir -p $(BENCH_RESULTS)
	env -u NODE_EXTRA_CA_CERTS $(BIN)/bench --out $(BENCH_RESULTS)/full.json

# The REST path as users see it: a standalone platform (oci sandbox; BENCH_REST_SANDBOX=process for
# development) on its own port and data
# directory, measured through its REST API with the guest key, then stopped. The bench invokes far
# beyond OpenWhisk's default throttles (60 a minute, 30 concurrent), so this platform's are raised.
BENCH_REST_PORT ?= 3299
BENCH_REST_SANDBOX ?= oci
.PHONY: bench-rest
bench-rest: build images ## End-to-end through REST: standalone platform, noop + crypto-md5, 50 samples; bench/results/rest.*
	@mkdir -p $(BENCH_RESULTS)
	@dir=$$(mktemp -d); log=$$dir/platform.log; \
	env -u NODE_EXTRA_CA_CERTS $(BIN)/controller-adapter --standalone --port $(BENCH_REST_PORT) \
	  --data-dir $$dir --sandbox $(BENCH_REST_SANDBOX) --invocations-per-minute 1000000 \
	  --concurrent-invocations 10000 >$$log 2>&1 & pid=$$!; \
	trap 'kill $$pid 2>/dev/null; wait $$pid 2>/dev/null; rm -rf $$dir' EXIT; \
	for i in $$(seq 100); do grep -q '^guest key: ' $$log && break; sleep 0.2; done; \
	key=$$(sed -n 's/^guest key: //p' $$log | head -1); \
	[ -n "$$key" ] || { echo "the platform did not start:"; tail -20 $$log; exit 1; }; \
	env -u NODE_EXTRA_CA_CERTS $(BIN)/bench --api-host http://127.0.0.1:$(BENCH_REST_PORT) --auth "$$key" \
	  --models teemate --functions crypto-md5 --sizes test --samples 50 --concurrency 8 \
	  --memory-concurrency 1 --repeat 1 --bursts 1 --out $(BENCH_RESULTS)/rest.json
