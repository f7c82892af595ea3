#!/bin/sh
# ensure-helm.sh: make sure the helm command (Helm 3) is built into the
# project-local .cache/tools/bin, for the test that renders the chart in
# configs/helm/clickagg (configs/helm_test.go). Idempotent: when the binary
# there is already the pinned version (go version -m tells), it does nothing.
#
# It builds helm from its Go module with `go install` (the Go toolchain the
# project uses anyway; no other download). When go is missing or the build
# fails it prints why and exits 0: the chart test then skips, or fails when
# CLICKAGG_REQUIRE_KAFKA is set (CI).
set -eu

HELM_VERSION=v3.22.0
cd "$(dirname "$0")/.."
bin=$(pwd)/.cache/tools/bin
helm=$bin/helm

if [ -x "$helm" ] && go version -m "$helm" 2>/dev/null |
	grep -q "^[[:space:]]*mod[[:space:]]*helm.sh/helm/v3[[:space:]]*$HELM_VERSION[[:space:]]"; then
	echo "helm $HELM_VERSION: $helm"
	exit 0
fi

if ! command -v go >/dev/null 2>&1; then
	echo "ensure-helm: go not found; the Helm chart test will be skipped" >&2
	exit 0
fi

echo "ensure-helm: building helm $HELM_VERSION into $bin (go install, a few minutes the first time)..." >&2
mkdir -p "$bin"
# Outside the project's module, so that its go.mod is not consulted.
if ! (cd / && GOBIN=$bin GOFLAGS=-buildvcs=false CGO_ENABLED=0 \
	go install "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"); then
	echo "ensure-helm: go install failed; the Helm chart test will be skipped" >&2
	exit 0
fi
echo "helm $HELM_VERSION: $helm"
