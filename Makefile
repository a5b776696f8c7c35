# Lifeboat: `make demo` runs a real two-region lab on this machine and walks
# a failover and a failback of it under load; `make demo-script` walks the
# script-driver example; `make test` runs every test. All install what they
# need first.
GO      ?= go
export PATH := $(PATH):/usr/local/go/bin

.PHONY: all deps build test demo demo-script bench schema clean

all: build

deps:
	@sh scripts/deps.sh

build: deps
	$(GO) build -o bin/lifeboat ./cmd/lifeboat

test: deps
	$(GO) vet ./...
	$(GO) test -race -count=1 -timeout 15m ./...

demo: build
	@sh scripts/demo-lab.sh

demo-script: build
	@sh scripts/demo.sh

bench: build
	LIFEBOAT_BIN=$(CURDIR)/bin/lifeboat $(GO) run ./bench

schema:
	$(GO) generate ./config

clean:
	rm -rf bin demo demo-lab
