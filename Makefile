# CTS-Go. `make demo` runs a job end to end on the embedded stack; `make test` runs every test.
# Both install what they need first (scripts/install-deps.sh).

GO        ?= go
BIN       := $(CURDIR)/bin
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
GITHASH   ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
LDFLAGS   := -s -w -X github.com/kbase/cts/coordinator/app.Version=$(VERSION) -X github.com/kbase/cts/coordinator/app.GitHash=$(GITHASH)
TESTFLAGS ?= -count=1 -timeout 20m

.PHONY: all deps build agent test vet lint race demo dev clean bench bench-site load release release-check

all: build

deps:
	@scripts/install-deps.sh

# The agent is static (CGO_ENABLED=0): it is copied to worker nodes of any Linux flavour.
agent:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '-s -w -X main.Version=$(VERSION)' -o $(BIN)/cts-agent ./agent/cmd/cts-agent

# cts-dev (the dev site, with the embedded stack) is its own program, so that the user CLI cts
# stays small. The two sample programs are static: they run inside the dev site's images.
build: agent
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/ ./coordinator/cmd/cts-coordinator ./coordinator/cmd/cts ./coordinator/cmd/cts-dev ./plugins/local/cmd/cts-launcher-local ./plugins/local/cmd/cts-local-supervisor ./test/demo/cmd/cts-demo
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '-s -w' -o $(BIN)/cts-demo-tool ./test/demo/tool
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '-s -w' -o $(BIN)/cts-demo-seqkit ./test/demo/seqkit

vet:
	$(GO) vet ./...

# staticcheck is pinned: scripts/install-deps.sh installs this version into GOPATH/bin.
STATICCHECK ?= $(shell $(GO) env GOPATH)/bin/staticcheck

# lint: go vet, gofmt, go.mod/go.sum tidy, and staticcheck (its default checks; a finding kept
# on purpose carries a //lint:ignore with its reason).
lint: vet
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt: not formatted:"; echo "$$out"; exit 1; fi
	$(GO) mod tidy -diff
	$(STATICCHECK) ./...

# The packages whose goroutines share state (the agent endpoint, the plugin supervision and
# site cache, the auth cache, metrics, the agent's runner, session and log streams, transfers,
# the plugin protocol, the client's followers), under the race detector.
RACE_PKGS := ./coordinator/internal/agentws/ ./coordinator/internal/auth/ ./coordinator/internal/metrics/ \
	./coordinator/internal/launch/ ./coordinator/internal/sites/ ./agent/internal/runner/ ./agent/internal/session/ \
	./agent/internal/logstream/ ./shared/transfer/ ./shared/launcher/ ./coordinator/client/

race:
	$(GO) test -race $(TESTFLAGS) $(RACE_PKGS)

# The Docker tests fail rather than skip when no engine answers: deps starts one; so do the crun
# tests when crun cannot run (deps installs it and lets it make cgroups). The suite
# runs in a temporary folder of its own (TMPDIR), and a process it leaves running there (an
# agent, a supervisor, a daemon) fails the run: scripts/no-leftovers.sh.
test: deps lint
	scripts/no-leftovers.sh sh -c 'CTS_REQUIRE_DOCKER=1 CTS_REQUIRE_CRUN=1 $(GO) test $(TESTFLAGS) ./... && $(MAKE) --no-print-directory race'

bench:
	$(GO) test -run '^$$' -bench . -benchtime 2s ./shared/checksum/ ./shared/args/ ./shared/transfer/ ./agent/internal/untar/

# The site benchmark (docs/benchmarks.md): submit bursts, status reads, idle CPU and trivial
# jobs on a fresh dev site, then the same after 10,000 finished jobs seeded through the store,
# and a bare `runc run`; the figures and the targets they meet go to $(BENCH_SITE_OUT). It
# takes 10 to 30 minutes. CTS_BENCH_SITE_SIZES=submits,statuses,history,trivial,idle_seconds
# runs a smaller one; CTS_BENCH_SITE_PROFILES=<folder> keeps CPU profiles of each phase.
BENCH_SITE_OUT ?= $(CURDIR)/bench-site.json
bench-site: deps
	CTS_BENCH_SITE_OUT='$(BENCH_SITE_OUT)' $(GO) test -count=1 -timeout 120m -run '^TestBenchSite$$' -v ./test/sitebench/

# The load benchmark (docs/benchmarks.md): the embedded stack, one coordinator (or -replicas N
# behind a small reverse proxy) and simulated agents speaking the agent protocol (10,000 by
# default); it writes load-report.json. Flags go in LOAD_FLAGS, e.g.
# `make load LOAD_FLAGS='-agents 1000 -hold 30s'`, or the 10-minute mixed soak with a replica
# killed and restarted: LOAD_FLAGS='-soak 10m -replicas 2 -agents 100 -job-containers 10'.
# `make test` runs a small version of it (TestLoadSmall in test/load).
LOAD_FLAGS ?=
load: deps
	$(GO) build -trimpath -o $(BIN)/load/ ./test/load/cmd/cts-load ./test/load/cmd/cts-launcher-sim ./coordinator/cmd/cts-coordinator
	$(BIN)/load/cts-load -bin $(BIN)/load -out load-report.json $(LOAD_FLAGS)

# Dev mode in the foreground: the embedded stack, the coordinator and the local launcher.
# Started again it restarts the same site (.dev keeps its state); `make clean` resets it. The
# coordinator listens on $(CTS_DEV_LISTEN), 127.0.0.1:5000 when unset.
dev: deps build
	$(BIN)/cts-dev --dir .dev $(if $(CTS_DEV_LISTEN),--listen $(CTS_DEV_LISTEN))

demo: deps build
	@scripts/demo.sh

clean:
	rm -rf $(BIN) .dev $(CURDIR)/dist

# Release builds: static (CGO_ENABLED=0) linux binaries in dist/ with their SHA-256 sums.
# Reproducible: the same commit built by the same Go version gives byte-identical files,
# wherever the tree is and whenever it is built: no file paths (-trimpath), no VCS stamp
# (-buildvcs=false; the version comes from VERSION/GITHASH), no build ID, no cgo, and nothing
# reads the clock (SOURCE_DATE_EPOCH plays no part). `make release-check` proves it.
DIST           ?= $(CURDIR)/dist
AGENT_ARCHES   ?= amd64 arm64
RELEASE_ARCHES ?= amd64
RELEASE_CMDS   := coordinator/cmd/cts-coordinator coordinator/cmd/cts plugins/local/cmd/cts-launcher-local plugins/local/cmd/cts-local-supervisor plugins/htcondor/cmd/cts-launcher-htcondor
RELEASE_BUILD  := CGO_ENABLED=0 GOOS=linux GOFLAGS=-mod=readonly $(GO) build -trimpath -buildvcs=false

release:
	rm -rf $(DIST) && mkdir -p $(DIST)
	for arch in $(AGENT_ARCHES); do \
		GOARCH=$$arch $(RELEASE_BUILD) -ldflags '-s -w -buildid= -X main.Version=$(VERSION)' \
			-o $(DIST)/cts-agent-linux-$$arch ./agent/cmd/cts-agent || exit 1; \
	done
	for arch in $(RELEASE_ARCHES); do for cmd in $(RELEASE_CMDS); do \
		GOARCH=$$arch $(RELEASE_BUILD) -ldflags '$(LDFLAGS) -buildid=' -o $(DIST)/$$(basename $$cmd)-linux-$$arch ./$$cmd || exit 1; \
	done; done
	cd $(DIST) && sha256sum cts-* > SHA256SUMS
	@echo "release $(VERSION) ($(GITHASH)) built with $$($(GO) env GOVERSION):" && cat $(DIST)/SHA256SUMS

# Builds the release twice and fails unless both SHA256SUMS are identical. The second build
# runs from a copy of the tree at another path, with an empty build cache, another time zone
# and another SOURCE_DATE_EPOCH. It takes minutes: everything is compiled from scratch.
release-check:
	v='$(VERSION)' h='$(GITHASH)' tmp=$$(mktemp -d) && trap 'rm -rf $$tmp' EXIT && \
	$(MAKE) --no-print-directory release DIST=$(DIST)/check-a VERSION=$$v GITHASH=$$h && \
	mkdir $$tmp/src && tar -C $(CURDIR) --exclude=./.git --exclude=./bin --exclude=./dist --exclude=./.dev -cf - . | tar -C $$tmp/src -xf - && \
	GOCACHE=$$tmp/cache TZ=Pacific/Kiritimati SOURCE_DATE_EPOCH=1 \
		$(MAKE) --no-print-directory -C $$tmp/src release DIST=$(DIST)/check-b VERSION=$$v GITHASH=$$h && \
	cmp $(DIST)/check-a/SHA256SUMS $(DIST)/check-b/SHA256SUMS && echo "release-check: reproducible"
