# meshlens — the commands the README promises.
GO        ?= go
GOBIN     := $(shell $(GO) env GOPATH)/bin
export PATH := $(PATH):$(GOBIN)
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -X main.version=$(VERSION)
FUZZTIME  ?= 20s

.PHONY: build demo lab test sysdeps tools lint unit fuzz proto proto-check bench bench-localize bench-agent bench-detect bench-soak clean

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/meshlens ./cmd/meshlens

# The server on its embedded defaults and a simulated 256-host fabric with
# faults (./bin/meshlens demo --mode real: real agents on loopback); prints
# the UI URL and commands to try. Ctrl-C stops it and removes its data.
demo: build
	./bin/meshlens demo

# The demo on real packets: a 12-host Clos fabric of network namespaces
# with the server and real agents in it, healthy for a minute, then a
# leaf-spine link drops 20%. Needs root. Ctrl-C takes the lab down.
LAB_DIR ?= meshlens-lab
lab: build
	@if [ "$$(id -u)" != 0 ]; then \
	  echo "make lab needs root: it creates network namespaces, veth links and nftables rules (run: sudo make lab)"; exit 1; fi
	@trap './bin/meshlens lab down --dir $(LAB_DIR)' EXIT; trap 'exit 0' INT TERM; \
	  ./bin/meshlens lab up --dir $(LAB_DIR) --pods 2 --racks-per-pod 2 --hosts-per-rack 3 && \
	  echo "Healthy for a minute, then dc1-pod1-leaf1--dc1-spine1 drops 20%. Press Ctrl-C to take the lab down." && \
	  sleep 60 && \
	  ./bin/meshlens lab fault add link_loss dc1-pod1-leaf1--dc1-spine1 --rate 0.2 --dir $(LAB_DIR) && \
	  ./bin/meshlens lab status --dir $(LAB_DIR) && \
	  while :; do sleep 3600; done

# Everything CI runs: lint, every test with the race detector (end-to-end
# suites included: they need root, Chromium, Prometheus, Alertmanager),
# then each fuzz target for $(FUZZTIME). Go tools come from go.mod's tool
# directives; a missing system package stops it at once, naming the
# apt-get command that installs it (scripts/sysdeps.sh).
test: sysdeps lint proto-check unit fuzz

sysdeps:
	@./scripts/sysdeps.sh check --root

lint:
	@unformatted=$$(gofmt -l $$(git ls-files '*.go')); \
	  if [ -n "$$unformatted" ]; then echo "gofmt needed:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet ./...
	$(GO) tool staticcheck ./...

# Unit tests in parallel, then the end-to-end suites (real processes,
# Chromium, the scenario suite) one package at a time: on a 2-core machine
# they would otherwise starve each other's timers and browsers.
unit: sysdeps
	$(GO) test -race -count=1 -timeout 30m $$($(GO) list ./... | grep -v '/test/')
	$(GO) test -race -count=1 -timeout 60m -p 1 ./test/...

fuzz:
	./scripts/fuzz.sh $(FUZZTIME)

# protoc-gen-go and protoc-gen-go-vtproto (the fast codec the server and
# agents use) are the versions go.mod's tool directives pin, built into
# bin/tools: the generated code names them (proto-check compares it).
TOOLS = bin/tools
PROTOC_GEN = --plugin=protoc-gen-go=$(TOOLS)/protoc-gen-go \
	--plugin=protoc-gen-go-vtproto=$(TOOLS)/protoc-gen-go-vtproto \
	--go_opt=module=github.com/meshlens/meshlens \
	--go-vtproto_opt=module=github.com/meshlens/meshlens,features=unmarshal+marshal+size+pool \
	--go-vtproto_opt=pool=github.com/meshlens/meshlens/internal/wire.Batch \
	--go-vtproto_opt=pool=github.com/meshlens/meshlens/internal/wire.ProbeResult

tools:
	$(GO) build -o $(TOOLS)/ tool

proto: tools
	@./scripts/sysdeps.sh check protoc
	protoc --go_out=. --go-vtproto_out=. $(PROTOC_GEN) internal/wire/meshlens.proto

# The committed generated code must match the schema.
proto-check: tools
	@./scripts/sysdeps.sh check protoc
	@tmp=$$(mktemp -d); \
	  protoc --go_out=$$tmp --go-vtproto_out=$$tmp $(PROTOC_GEN) internal/wire/meshlens.proto && \
	  for f in meshlens.pb.go meshlens_vtproto.pb.go; do \
	    diff -q $$tmp/internal/wire/$$f internal/wire/$$f >/dev/null || \
	    { echo "internal/wire/$$f is stale: run make proto"; rm -rf $$tmp; exit 1; }; \
	  done; \
	  rm -rf $$tmp

bench:
	$(GO) test -run '^$$' -bench . -benchmem -benchtime 2s ./internal/...

# The scenario suite: F1, detection and localization time per scenario, for
# the meshlens localizer and the 007-style vote baseline side by side.
bench-localize:
	$(GO) run ./bench/localize -suite 'test/scenarios/*.yaml'

# Agent CPU and memory beside fping at Pingmesh scale (2,500 peers).
bench-agent:
	./bench/agent/run.sh

# Live, over the real bus: onset to blame per fault kind beside the
# behaviour before issue 12 (~45 min), and a 40-minute soak of the server
# with 1,000 simulated agents (flat memory, goroutines, files, series;
# every result counted once).
bench-detect:
	$(GO) run ./bench/detect -onsets 10 -parallel 8

bench-soak:
	$(GO) run ./bench/soak -profiles bench/soak/profiles

clean:
	rm -rf bin

# A screenshot of every page, light and dark, of `meshlens demo` with its
# faults showing, into docs/screenshots/ (real Chromium; about eight
# minutes: the pictures show the demo seven minutes in). The same test
# checks that the fault is visible on the overview and in the heatmap's
# default view.
.PHONY: screenshots
screenshots:
	MESHLENS_SCREENSHOTS=$(CURDIR)/docs/screenshots $(GO) test -count=1 -timeout 20m -run '^TestDemo$$' ./test/e2e/ui

# The container image (FROM scratch: the static binary and a CA bundle),
# built with buildah and checked by running `meshlens --version` in it.
# Needs buildah and podman (apt-get install buildah podman).
IMAGE ?= localhost/meshlens:$(VERSION)
.PHONY: image
image:
	VERSION=$(VERSION) GO=$(GO) ./deploy/container/build.sh $(IMAGE)
