# CTS-Go. `make demo` runs a job end to end on the embedded stack; `make test` runs every test.
# Both install what they need first (scripts/install-deps.sh).

GO        ?= go
BIN       := $(CURDIR)/bin
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
GITHASH   ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
LDFLAGS   := -s -w -X github.com/kbase/cts/coordinator/app.Version=$(VERSION) -X github.com/kbase/cts/coordinator/app.GitHash=$(GITHASH)
TESTFLAGS ?= -count=1 -timeout 20m

.PHONY: all deps build agent test vet demo dev clean bench

all: build

deps:
	@scripts/install-deps.sh

# The agent is static (CGO_ENABLED=0): it is copied to worker nodes of any Linux flavour.
agent:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '-s -w -X main.Version=$(VERSION)' -o $(BIN)/cts-agent ./agent/cmd/cts-agent

build: agent
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/ ./coordinator/cmd/cts-coordinator ./coordinator/cmd/cts ./plugins/local/cmd/cts-launcher-local ./test/demo/cmd/cts-demo
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '-s -w' -o $(BIN)/cts-demo-tool ./test/demo/tool

vet:
	$(GO) vet ./...

test: deps vet
	$(GO) test $(TESTFLAGS) ./...

bench:
	$(GO) test -run '^$$' -bench . -benchtime 2s ./shared/checksum/ ./shared/args/ ./agent/internal/transfer/

# Dev mode in the foreground: the embedded stack, the coordinator and the local launcher.
dev: deps build
	$(BIN)/cts dev --dir .dev

demo: deps build
	@scripts/demo.sh

clean:
	rm -rf $(BIN) .dev
