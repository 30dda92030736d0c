#!/usr/bin/env bash
# Builds the service's container image with podman: `bash scripts/build-image.sh [tag]`.
#
# The tag defaults to localhost/image-cache:<package.json version>. The base image comes from
# scripts/build-base-image.sh when it cannot be pulled (set PULL_BASE=1 to pull the published
# one instead). When the host reaches the npm registry through a TLS-intercepting proxy, its
# CA bundle (HOST_CA_FILE, default /etc/ssl/certs/ca-certificates.crt) and an npmrc naming it
# are mounted into the build's RUN steps, read-only, so the Dockerfile itself stays clean and
# nothing of the host ends up in the image.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/podman/env.sh

image="${1:-localhost/image-cache:$(node -p 'require("./package.json").version')}"
host_ca="${HOST_CA_FILE-/etc/ssl/certs/ca-certificates.crt}"

pull=never
if [[ "${PULL_BASE:-0}" == 1 ]]; then
  pull=missing
else
  bash scripts/build-base-image.sh
fi

build_args=(--pull="$pull" --tag "$image" --file Dockerfile)
if [[ -n "$host_ca" && -f "$host_ca" ]]; then
  npmrc="$(mktemp)"
  trap 'rm -f "$npmrc"' EXIT
  printf 'cafile=/run/host-ca/ca-certificates.crt\nregistry=%s\n' "$(npm config get registry 2>/dev/null)" >"$npmrc"
  chmod 0644 "$npmrc"
  build_args+=(-v "$host_ca:/run/host-ca/ca-certificates.crt:ro" -v "$npmrc:/usr/local/etc/npmrc:ro")
fi

podman build "${build_args[@]}" .
echo "built $image ($(podman image inspect --format '{{.Size}}' "$image" | numfmt --to=iec-i --suffix=B))"
