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

.PHONY: all build release demo test test-short soak lint bench bench-peers postgres kafka peers chromium helm promtool clean

all: build

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/clickagg

# Static release binaries for each platform in dist/, named
# clickagg-VERSION-OS-ARCH, with the same flags as build, and their SHA-256
# sums in dist/SHA256SUMS (check with: cd dist && sha256sum -c SHA256SUMS).
PLATFORMS ?= linux/amd64 linux/arm64
release:
	@case "$(VERSION)" in *-dirty) echo "release: the work tree has uncommitted changes (version $(VERSION))" >&2;; esac
	rm -rf dist && mkdir -p dist
	@for p in $(PLATFORMS); do \
		os=$${p%/*} arch=$${p#*/}; \
		echo "build $$os/$$arch"; \
		CGO_ENABLED=0 GOOS=$$os GOARCH=$$arch $(GO) build -trimpath -ldflags '$(LDFLAGS)' \
			-o dist/clickagg-$(VERSION)-$$os-$$arch ./cmd/clickagg || exit 1; \
	done
	cd dist && sha256sum clickagg-* > SHA256SUMS && cat SHA256SUMS

# PostgreSQL server binaries: installed from the OS packages when missing
# (as root), otherwise the script says what to install.
postgres:
	@./scripts/ensure-postgres.sh

# The real Apache Kafka broker's jars (kafka/lib, from Maven Central) and
# kcat, for the end-to-end and chaos tests. Both skip with a message when
# Java/Maven or apt are missing; CLICKAGG_REQUIRE_KAFKA=1 turns that into a
# test failure (CI).
kafka:
	@./scripts/ensure-kafka.sh
	@./scripts/ensure-kcat.sh

# The contenders of `make bench-peers`: every peers/*/pom.xml (the Flink
# job, the Kafka Streams app) built with Maven into peers/NAME/target.
# Skips with a message when Java/Maven are missing.
peers:
	@./scripts/ensure-peers.sh

# Headless Chromium (/usr/bin/chromium) for the status page's browser test,
# from the OS packages when missing (as root); the test skips without it.
chromium:
	@./scripts/ensure-chromium.sh

# helm, built from its Go module into .cache/tools/bin, for the chart test
# (configs/helm_test.go), and promtool from the OS packages, for the
# alerting rules test. Both skip with a message when missing;
# CLICKAGG_REQUIRE_KAFKA=1 (CI) turns that into a failure.
helm:
	@./scripts/ensure-helm.sh

promtool:
	@./scripts/ensure-promtool.sh

demo: postgres build
	./$(BIN) demo $(DEMO_FLAGS)

# Unit, integration (kfake + a throwaway PostgreSQL), end-to-end and the
# bounded chaos suite (real Kafka broker when available).
CHAOS ?= short
test: postgres kafka peers chromium helm promtool
	$(GO) vet ./...
	@rm -f bin/chaos-report.txt; mkdir -p bin
	CLICKAGG_REQUIRE_POSTGRES=1 CLICKAGG_CHAOS=$(CHAOS) CLICKAGG_CHAOS_REPORT=$(CURDIR)/bin/chaos-report.txt \
		$(GO) test -race -count=1 -timeout 30m $(TEST_FLAGS) ./...
	@if [ -s bin/chaos-report.txt ]; then echo "chaos suite:"; cat bin/chaos-report.txt; fi

# The long soak before a release: every chaos scenario ten times bigger.
soak:
	$(MAKE) test CHAOS=soak TEST_FLAGS='-run Chaos -timeout 3h'

test-short:
	$(GO) test -short -count=1 ./...

lint:
	$(GO) vet ./...
	@test -z "$$(gofmt -l .)" || (gofmt -l . && exit 1)

# Micro-benchmarks, then the harness (BENCHMARKS.md): pre-loaded workloads
# through `clickagg run --exit-when-idle`, freshness and recovery.
BENCH_WORKLOADS ?= all
bench: postgres build
	@./scripts/ensure-kafka.sh
	$(GO) test -run '^$$' -bench . -benchmem -count 5 ./stream/ ./state/ ./sink/ | tee bin/microbench.txt
	./$(BIN) bench --workload $(BENCH_WORKLOADS) --json bin/bench.json

# The same pre-loaded zipf topic through clickagg, Flink and Kafka Streams
# on the same broker and PostgreSQL (BENCHMARKS.md), every window compared
# with clickagg's; e.g. BENCH_PEERS_FLAGS='--records 2000000'.
BENCH_PEERS_FLAGS ?= --json bin/bench-peers.json
bench-peers: postgres kafka peers build
	./$(BIN) bench --peers $(BENCH_PEERS_FLAGS)

clean:
	rm -rf bin dist
