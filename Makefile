# The Go toolchain is the only prerequisite; the scripts install and start
# ZooKeeper, Consul and Redis for the tests.
GO ?= go
STATICCHECK ?= honnef.co/go/tools/cmd/staticcheck@v0.8.2

.PHONY: all build test test-short bench bench-go lint demo clean mutate fuzz

all: lint test

build:
	$(GO) build -o bin/coordctl ./cmd/coordctl

# Every test, on etcd (embedded), ZooKeeper and Consul, with the race detector.
test:
	scripts/test.sh -v

# Only what needs no external server (etcd is embedded).
test-short:
	$(GO) test -race -count=1 ./...

# The side-by-side table of docs/BENCHMARKS.md: BENCH='-rounds 9 -only zk/'.
bench:
	scripts/bench.sh $(BENCH)

# The go test benchmarks (models), on every backend.
bench-go:
	COORD_SELFTEST=0 COORD_ALLOW_NO_TESTS=1 scripts/test.sh -run '^$$' -bench . -benchmem

# Mutation testing (long: about a minute per surviving mutant): MUTATE=-run etcd-
mutate:
	scripts/mutate.sh $(MUTATE)

# Each fuzz target for FUZZTIME (their seeds run in every go test).
FUZZTIME ?= 30s
fuzz:
	@for t in $$($(GO) test -list '^Fuzz' ./... | grep '^Fuzz' ); do \
	  pkg=$$(grep -rl "func $$t(" --include='*_test.go' . | head -1 | xargs dirname); \
	  echo "== $$t ($$pkg)"; $(GO) test "$$pkg" -run '^$$' -fuzz "^$$t$$" -fuzztime $(FUZZTIME) -parallel 1 || exit 1; \
	done

lint:
	@test -z "$$(gofmt -l .)" || { echo "gofmt needed:"; gofmt -l .; exit 1; }
	$(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...

demo: build
	bin/coordctl demo

clean:
	rm -rf bin
