# luksconv — see README.md. `make demo` and `make test` install what they need.
GO      ?= go
BIN     := bin/luksconv
# The full suite must stay well under CI's limit on 2 cores.
TESTTIMEOUT ?= 25m

.PHONY: all deps build test vet demo bench fuzz example-image clean

all: build

deps:
	@scripts/install-deps.sh

build:
	$(GO) build -buildvcs=auto -o $(BIN) ./cmd/luksconv

vet:
	$(GO) vet ./...

# The concurrent parts (the pipeline and the plan's Close, the blob source and sink) run again under the race detector.
RACEPKGS := ./luksconv ./blobio ./blobdisk

test: deps vet
	$(GO) test -timeout $(TESTTIMEOUT) ./...
	$(GO) test -race -timeout $(TESTTIMEOUT) $(RACEPKGS)

demo: deps build
	@scripts/demo.sh

bench: deps build
	@scripts/bench.sh

# Each fuzz target for FUZZTIME (default 30s); FUZZ=./pkg for one package.
fuzz: deps
	@scripts/fuzz.sh

# The committed example disk for the documentation examples (testdata/example/, see its README); tests
# never rebuild it.
example-image: deps
	testdata/mkfixtures.sh --example testdata/example

clean:
	rm -rf bin testdata/.cache demo-out
