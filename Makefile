# Lifeboat: `make demo` walks a failover and a failback of the example
# service; `make test` runs every test. Both install what they need first.
GO      ?= go
export PATH := $(PATH):/usr/local/go/bin

.PHONY: all deps build test demo bench schema clean

all: build

deps:
	@sh scripts/deps.sh

build: deps
	$(GO) build -o bin/lifeboat ./cmd/lifeboat

test: deps
	$(GO) vet ./...
	$(GO) test -race -count=1 -timeout 15m ./...

demo: build
	@sh scripts/demo.sh

bench: build
	LIFEBOAT_BIN=$(CURDIR)/bin/lifeboat $(GO) run ./bench

schema:
	$(GO) generate ./config

clean:
	rm -rf bin demo
