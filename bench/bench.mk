# bench.mk: the bench targets, included by the top-level Makefile.
# `make bench` runs the quick profile (< 5 minutes on 2 cores); `make bench-full` the paper's set.
BENCH_RESULTS ?= bench/results

.PHONY: bench
bench: build ## Quick benchmark: 3 functions x teemate/native/strawman, JSON + report in bench/results/quick.*
	@mkdir -p $(BENCH_RESULTS)
	env -u NODE_EXTRA_CA_CERTS $(BIN)/bench --quick --out $(BENCH_RESULTS)/quick.json

.PHONY: bench-full
bench-full: build ## Full benchmark: nine functions, small inputs, 50 samples, 3 repetitions (about an hour)
	@mkdir -p $(BENCH_RESULTS)
	env -u NODE_EXTRA_CA_CERTS $(BIN)/bench --out $(BENCH_RESULTS)/full.json
