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
  (cd test/sdk/js && npm ci --no-audit --no-fund --loglevel=error)
fi

# PostgreSQL server binaries, for the store tests against PostgreSQL (they
# start a private server on loopback; see internal/store/pgtest). Debian
# keeps initdb off PATH, under /usr/lib/postgresql/*/bin.
if ! command -v initdb >/dev/null 2>&1 && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "== PostgreSQL server for the store tests: apt-get install postgresql"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql
  else
    echo "== PostgreSQL server not found and not root: the PostgreSQL store tests will skip (fail under CI)"
  fi
fi

echo "== go test"
go test -timeout 60m "$@" ./...
