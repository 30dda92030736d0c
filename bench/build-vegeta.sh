#!/usr/bin/env bash
# Builds vegeta, the open-loop load generator of `npm run bench` (a constant arrival rate, where
# wrk's closed loop waits for each reply before it sends the next), at VEGETA_VERSION from the Go
# module proxy into ~/.cache/image-cache/vegeta-<version>/; skips the build when it is there.
# Prints the binary's path.
set -euo pipefail
VEGETA_VERSION=v12.13.0
bin_dir="${XDG_CACHE_HOME:-$HOME/.cache}/image-cache/vegeta-$VEGETA_VERSION"
if [[ ! -x "$bin_dir/vegeta" ]]; then
  command -v go >/dev/null || {
    echo "vegeta is built with Go, which is not installed" >&2
    exit 1
  }
  echo "building vegeta $VEGETA_VERSION with go install" >&2
  rm -rf "$bin_dir.partial"
  mkdir -p "$bin_dir.partial"
  CGO_ENABLED=0 GOBIN="$bin_dir.partial" go install -trimpath -ldflags "-s -w" "github.com/tsenart/vegeta/v12@$VEGETA_VERSION"
  rm -rf "$bin_dir"
  mv "$bin_dir.partial" "$bin_dir"
fi
echo "$bin_dir/vegeta"
