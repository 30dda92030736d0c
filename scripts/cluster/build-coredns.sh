#!/usr/bin/env bash
# Builds CoreDNS, the cluster's DNS, at COREDNS_VERSION from the Go module proxy into
# $CLUSTER_CACHE/coredns-<version>/; skips the build when it is there. It runs on the node's
# host, not in a pod, so it needs no image.
set -euo pipefail
source "$(dirname "$0")/common.sh"

built_version() {
  "$COREDNS_BIN/coredns" -version 2>/dev/null | sed -n 's/^CoreDNS-//p'
}

if [[ "$(built_version)" != "${COREDNS_VERSION#v}" ]]; then
  echo "building CoreDNS $COREDNS_VERSION with go install" >&2
  rm -rf "$COREDNS_BIN.partial"
  mkdir -p "$COREDNS_BIN.partial"
  CGO_ENABLED=0 GOBIN="$COREDNS_BIN.partial" go install -trimpath -ldflags "-s -w" "github.com/coredns/coredns@$COREDNS_VERSION"
  rm -rf "$COREDNS_BIN"
  mv "$COREDNS_BIN.partial" "$COREDNS_BIN"
fi
"$COREDNS_BIN/coredns" -version | sed -n 1p >&2
echo "$COREDNS_BIN"
