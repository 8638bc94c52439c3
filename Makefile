# xflow — see README.md. `make demo` and `make test` need root.
GO      ?= go
# Go and the tools `go install` puts in ~/go/bin, wherever PATH lacks them.
export PATH := $(PATH):/usr/local/go/bin:$(HOME)/go/bin
BIN     := bin/xflow
BENCH_BIN := bin/xflow-bench
PKGS    := ./...
# Fuzz budgets are execution counts: a duration races Go 1.26's fuzz
# coordinator into a spurious "context deadline exceeded" (golang/go#75804).
FUZZ_PARSER ?= 40000x
FUZZ_CONFIG ?= 150000x

.PHONY: all build image generate test vet fuzz demo bench gobench clean need-root deps test-deps bench-deps check-generated test-kernels

all: build

# The version, revision and times `xflow version` and xflow_build_info
# report (internal/buildinfo), from this checkout.
LDFLAGS = $(shell ./scripts/buildinfo.sh)

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/xflow
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BENCH_BIN) ./cmd/xflow-bench

# The container image (Dockerfile), tagged as deploy/kubernetes names it,
# with the version information `make build` records. Needs docker.
IMAGE ?= xflow:dev
image:
	docker build $$(./scripts/buildinfo.sh --build-args) -t $(IMAGE) .

# Regenerate the eBPF objects and their Go bindings (needs clang and
# libbpf-dev; `go build` itself only needs the committed output).
generate:
	cd bpf && $(GO) generate ./...

# Fails if the committed objects do not match bpf/*.c and bpf/bare/*.c (CI
# runs it).
check-generated: generate
	git diff --exit-code -- bpf/

need-root:
	@[ "$$(id -u)" = 0 ] || { echo "run as root, e.g. sudo make $(MAKECMDGOALS)"; exit 1; }

# What the demo uses (Debian packages).
deps: need-root
	@./scripts/deps.sh

# What the tests use: the above, plus the interop suite's collectors
# (nfdump, tshark, pmacct's nfacctd, goflow2) and the agents the benchmark
# compares with.
test-deps: need-root
	@./scripts/deps.sh interop bench

# What `make bench` uses: softflowd and pmacct.
bench-deps: need-root
	@./scripts/deps.sh bench

vet:
	$(GO) vet $(PKGS)
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  [ -z "$$out" ] || { echo "gofmt needed: $$out"; exit 1; }

# The race detector runs wherever it is practical: everything but the
# packages that time eBPF programs or drive veth traffic generators, where
# its 5-10x slowdown would change what they measure.
#
# make test prints what go test prints without -v (every failing test's
# output in full) and ends with one summary of every run
# (internal/testsummary): per package the tests (subtests included) passed,
# failed and skipped and the time, every skipped test by name with its
# reason, every failure, and the kernel guest's verdict. A failing run does
# not stop the others; the summary's exit status is make test's. The runs'
# events stay in $(TEST_OUT)/*.json.
NORACE_PKGS := /bpf /bench /internal/testnet /cmd/xflow-bench
RACE_LIST    = $$($(GO) list $(PKGS) | grep -v $(foreach p,$(NORACE_PKGS),-e '$(p)$$' -e '$(p)/'))
NORACE_LIST  = $$($(GO) list $(PKGS) | grep $(foreach p,$(NORACE_PKGS),-e '$(p)$$' -e '$(p)/'))
TEST_OUT    := out/test
TESTSUM     := bin/testsummary
test: need-root test-deps vet
	@rm -rf $(TEST_OUT) && mkdir -p $(TEST_OUT) && $(GO) build -o $(TESTSUM) ./internal/testsummary
	-$(GO) test -json -count=1 -race -timeout 15m $(RACE_LIST) | $(TESTSUM) -o $(TEST_OUT)/race.json
	-$(GO) test -json -count=1 -timeout 15m $(NORACE_LIST) | $(TESTSUM) -o $(TEST_OUT)/norace.json
	-$(call fuzz-parser,-json) | $(TESTSUM) -o $(TEST_OUT)/fuzz-parser.json
	-$(call fuzz-config,-json) | $(TESTSUM) -o $(TEST_OUT)/fuzz-config.json
	$(MAKE) --no-print-directory test-kernels; echo $$? >$(TEST_OUT)/kernels-6.1-guest.rc
	@$(TESTSUM) -report $(TEST_OUT)

# The kernel-dependent tests again on Debian 12's 6.1 LTS kernel (no TCX),
# booted under QEMU (KVM if /dev/kvm exists, else TCG): see docs/kernels.md.
test-kernels: need-root
	@./scripts/kernels/run.sh

# Short fuzz runs: the packet parser against the reference decoder, and the
# config loader. $(1): more go test flags (make test adds -json).
fuzz-parser = $(GO) test $(1) -count=1 -run '^$$' -fuzz '^FuzzParser$$' -fuzztime $(FUZZ_PARSER) ./bpf
fuzz-config = $(GO) test $(1) -count=1 -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZ_CONFIG) ./config
fuzz:
	$(call fuzz-parser,)
	$(call fuzz-config,)

demo: need-root deps build
	@$(GO) run ./internal/demo $(BIN)

# The performance evaluation: data plane per map kind, the agent end to
# end on a veth pair beside softflowd and pmacctd, and the exporter. Writes
# results.md, results.json and plots to $(BENCH_OUT). The benchmark is its
# own binary (cmd/xflow-bench); the end-to-end part runs bin/xflow.
BENCH_OUT  ?= bench-results
BENCH_RUNS ?= 5
bench: need-root bench-deps build
	$(BENCH_BIN) --out $(BENCH_OUT) --runs $(BENCH_RUNS) --xflow $(BIN)

# Go benchmarks of single stages (data plane programs, drain loop, encoders).
gobench: need-root
	$(GO) test -count=1 -run '^$$' -bench . -benchtime 2000000x ./bpf/...
	$(GO) test -count=1 -run '^$$' -bench . -benchtime 3x ./exporter
	$(GO) test -count=1 -run '^$$' -bench . -benchmem ./exporter/ipfix ./exporter/netflow9 ./exporter/netflow5

clean:
	rm -rf bin
