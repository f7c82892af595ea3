# clickagg — see README.md. Two set-up commands on a fresh machine:
#   make demo    run the product on its embedded defaults
#   make test    run the test suite
GO        ?= go
BIN       := bin/clickagg
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
# The same static build as the Dockerfile.
LDFLAGS   := -s -w -X main.version=$(VERSION)
DEMO_FLAGS ?= --duration 60s
TEST_FLAGS ?=

.PHONY: all build demo test test-short lint bench postgres clean

all: build

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/clickagg

# PostgreSQL server binaries: installed from the OS packages when missing
# (as root), otherwise the script says what to install.
postgres:
	@./scripts/ensure-postgres.sh

demo: postgres build
	./$(BIN) demo $(DEMO_FLAGS)

# Unit, integration (kfake + a throwaway PostgreSQL) and end-to-end tests.
test: postgres
	$(GO) vet ./...
	CLICKAGG_REQUIRE_POSTGRES=1 $(GO) test -race -count=1 -timeout 20m $(TEST_FLAGS) ./...

test-short:
	$(GO) test -short -count=1 ./...

lint:
	$(GO) vet ./...
	@test -z "$$(gofmt -l .)" || (gofmt -l . && exit 1)

bench:
	$(GO) test -run '^$$' -bench . -benchmem ./stream/ ./state/ ./sink/

clean:
	rm -rf bin
