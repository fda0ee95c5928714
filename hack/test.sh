#!/usr/bin/env bash
# Runs podid's whole test suite: unit, integration (real AWS SDKs and CLI
# against a real server) and the tests that need a real kube-apiserver.
# Prepares what those tests need first, so no go test timeout pays for it.
set -euo pipefail
cd "$(dirname "$0")/.."

# The real kube-apiserver and etcd, built once from the Go module proxy and
# cached under ~/.cache/podid (about 11 minutes cold on 2 cores).
if [ -d internal/kubetest/cmd/kubebuild ]; then
  echo "== kube-apiserver and etcd for tests"
  go run ./internal/kubetest/cmd/kubebuild
fi

# AWS SDK for JavaScript v3, for the container-credentials tests.
if [ -f test/sdk/js/package.json ]; then
  echo "== AWS SDK for JavaScript v3 (npm)"
  (cd test/sdk/js && npm install --no-audit --no-fund --loglevel=error)
fi

echo "== go test"
go test -timeout 60m "$@" ./...
