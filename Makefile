# lanes: see README.md. Tests and the demo need root (namespaces, OVS, iptables).
GO       ?= go
BIN      := bin
GOBIN    := $(shell $(GO) env GOPATH)/bin
STATICCHECK_VERSION := v0.8.2
CMDS     := lanesd lanesctl lanes-vm lanes-lab

# Every binary carries its version, commit and date (lanesd --version, lanesctl version,
# the lanes_build_info metric).
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT   ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
DATE     ?= $(shell date -u +%Y-%m-%dT%H:%M:%SZ)
VPKG     := github.com/lanes-net/lanes/internal/version
LDFLAGS  := -X $(VPKG).Version=$(VERSION) -X $(VPKG).Commit=$(COMMIT) -X $(VPKG).Date=$(DATE)

# make deb: nfpm, pinned, run with go run (no packager to install).
NFPM_VERSION := v2.45.2
DEB_ARCH     ?= $(shell $(GO) env GOARCH)
# Debian versions must start with a digit: a tag v1.2.3 gives 1.2.3, an untagged
# tree 0.0.0+git<commit>.
DEB_VERSION  ?= $(shell v=$$(git describe --tags --match 'v[0-9]*' 2>/dev/null | sed 's/^v//'); \
                  echo $${v:-0.0.0+git$$(git rev-parse --short HEAD 2>/dev/null || echo unknown)})

# make install: a plain host, without a package.
PREFIX   ?= /usr/local
DESTDIR  ?=

# The race detector over the packages that need no root, plus the controller's
# integration test (real OVS, embedded etcd, a test namespace).
RACE_PKGS := ./api/... ./flows/... ./store/... ./diag/... ./controller/...

.PHONY: all build install deb test test-race test-short bench lint deps demo demo-down test-qemu clean

all: build

deps:
	@scripts/deps.sh

build:
	@mkdir -p $(BIN)
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN)/ $(addprefix ./cmd/,$(CMDS))

# The daemon and the CLI, the systemd unit and an example config (never overwritten).
install: build
	install -D -m 0755 $(BIN)/lanesd $(DESTDIR)$(PREFIX)/sbin/lanesd
	install -D -m 0755 $(BIN)/lanesctl $(DESTDIR)$(PREFIX)/bin/lanesctl
	install -D -m 0644 deploy/lanesd.service $(DESTDIR)/etc/systemd/system/lanesd.service
	sed -i 's|/usr/sbin/lanesd|$(PREFIX)/sbin/lanesd|' $(DESTDIR)/etc/systemd/system/lanesd.service
	test -e $(DESTDIR)/etc/lanes/lanesd.json || install -D -m 0640 deploy/lanesd.json $(DESTDIR)/etc/lanes/lanesd.json
	@echo "installed; edit /etc/lanes/lanesd.json, then: systemctl daemon-reload && systemctl enable --now lanesd"

deb: build
	DEB_ARCH=$(DEB_ARCH) DEB_VERSION=$(DEB_VERSION) $(GO) run github.com/goreleaser/nfpm/v2/cmd/nfpm@$(NFPM_VERSION) \
		package --packager deb --config deploy/nfpm.yaml --target $(BIN)/

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
