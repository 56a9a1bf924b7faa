# lanes: see README.md. Tests and the demo need root (namespaces, OVS, iptables).
GO       ?= go
BIN      := bin
GOBIN    := $(shell $(GO) env GOPATH)/bin
STATICCHECK_VERSION := v0.8.2
CMDS     := lanesd lanesctl lanes-vm lanes-lab

# The race detector over the packages that need no root, plus the controller's
# integration test (real OVS, embedded etcd, a test namespace).
RACE_PKGS := ./api/... ./flows/... ./store/... ./diag/... ./controller/...

.PHONY: all build test test-race test-short bench lint deps demo demo-down test-qemu clean

all: build

deps:
	@scripts/deps.sh

build:
	@mkdir -p $(BIN)
	$(GO) build -o $(BIN)/ $(addprefix ./cmd/,$(CMDS))

# Every layer: golden flows, real OVS, real kernel, real etcd, multi-host end to end.
test: deps build
	$(GO) test -count=1 -timeout 40m ./...

test-race: deps
	$(GO) test -count=1 -race -timeout 20m $(RACE_PKGS)

test-short:
	$(GO) test -count=1 -short ./...

bench: deps build
	$(GO) test -count=1 -run '^$$' -bench . -benchtime 1x -timeout 60m ./...

lint:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); exit 1; }
	$(GO) vet ./...
	@test -x $(GOBIN)/staticcheck || $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)
	$(GOBIN)/staticcheck ./...

demo: deps build
	@scripts/demo.sh up

demo-down: build
	@scripts/demo.sh down

test-qemu: deps build
	@scripts/qemu-deps.sh
	$(GO) test -count=1 -timeout 20m -tags qemu -run TestQemu ./tests/...

clean:
	rm -rf $(BIN)
