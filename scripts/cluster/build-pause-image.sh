#!/usr/bin/env bash
# Builds the pod sandbox ("pause") image from pause/pause.c, as a scratch image holding one
# static binary, and saves it as an OCI archive: `bash build-pause-image.sh <archive>`.
# The node has no registry to pull the upstream pause image from; containerd's sandbox_image
# names this one (localhost/image-cache-pause:1).
set -euo pipefail
source "$(dirname "$0")/../podman/env.sh"
source "$(dirname "$0")/common.sh"

archive="$1"
image=localhost/image-cache-pause:1
work="$(mktemp -d)"
container=""
cleanup() {
  [[ -n "$container" ]] && buildah rm "$container" >/dev/null 2>&1
  rm -rf "$work"
}
trap cleanup EXIT

gcc -static -O2 -Wall -Wextra -Werror -o "$work/pause" "$CLUSTER_SCRIPTS/pause/pause.c"
strip "$work/pause"
container="$(buildah from scratch)"
buildah copy --chmod 0755 "$container" "$work/pause" /pause >/dev/null
buildah config --entrypoint '["/pause"]' --user 65535:65535 "$container"
buildah commit --quiet "$container" "$image" >/dev/null
rm -f "$archive"
podman save --quiet --format oci-archive -o "$archive" "$image"
