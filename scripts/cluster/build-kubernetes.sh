#!/usr/bin/env bash
# Builds the Kubernetes commands (common.sh: KUBERNETES_COMMANDS) at KUBERNETES_VERSION from
# the Go module proxy, through the wrapper module in kubernetes/, into
# $CLUSTER_CACHE/kubernetes-<version>/. Skips the build when every binary is there; with Go's
# build cache warm, a rebuild only links. Cold: about 1 GB of modules and 10 minutes of CPU.
set -euo pipefail
source "$(dirname "$0")/common.sh"

built() {
  local command
  for command in "${KUBERNETES_COMMANDS[@]}"; do
    [[ -x "$KUBERNETES_BIN/$command" ]] || return 1
  done
  [[ "$("$KUBERNETES_BIN/kubectl" version --client -o json 2>/dev/null | grep -o '"gitVersion": *"[^"]*"')" == *"\"$KUBERNETES_VERSION\"" ]]
}

if ! built; then
  echo "building Kubernetes $KUBERNETES_VERSION (${KUBERNETES_COMMANDS[*]}) with go build" >&2
  # The version stamp Kubernetes' own build sets; without it the components say v0.0.0 and
  # kubectl's and the kubelet's version checks fail.
  minor="${KUBERNETES_VERSION#v1.}"
  minor="${minor%%.*}"
  ldflags="-s -w"
  for package in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $package.gitVersion=$KUBERNETES_VERSION -X $package.gitMajor=1"
    ldflags+=" -X $package.gitMinor=$minor -X $package.gitTreeState=clean"
  done
  packages=()
  for command in "${KUBERNETES_COMMANDS[@]}"; do
    packages+=("k8s.io/kubernetes/cmd/$command")
  done
  staging="$KUBERNETES_BIN.partial"
  rm -rf "$staging"
  mkdir -p "$staging"
  (cd "$CLUSTER_SCRIPTS/kubernetes" && CGO_ENABLED=0 go build -trimpath -ldflags "$ldflags" -o "$staging/" "${packages[@]}")
  rm -rf "$KUBERNETES_BIN"
  mv "$staging" "$KUBERNETES_BIN"
fi
"$KUBERNETES_BIN/kubectl" version --client 2>/dev/null | sed -n 1p >&2
echo "$KUBERNETES_BIN"
