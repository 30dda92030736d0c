#!/usr/bin/env bash
# Installs the pinned Helm, built from source through the Go module proxy (our CI machines
# reach no other download site): `bash scripts/install-helm.sh`. Prints the binary's path.
# Skips the build when that exact version is already installed. HELM_VERSION overrides the pin.
set -euo pipefail

HELM_VERSION="${HELM_VERSION:-v4.3.1}"
major="${HELM_VERSION%%.*}"
module="helm.sh/helm/${major}"
bin_dir="$(go env GOPATH)/bin"
helm_bin="$bin_dir/helm"

installed_version() {
  go version -m "$helm_bin" 2>/dev/null | awk -v module="$module" '$1 == "mod" && $2 == module { print $3 }'
}

if [[ "$(installed_version)" != "$HELM_VERSION" ]]; then
  echo "installing helm $HELM_VERSION with go install" >&2
  # The version stamp that Helm's own Makefile sets, so `helm version` reports the release.
  GOBIN="$bin_dir" go install \
    -ldflags "-s -w -X ${module}/internal/version.version=${HELM_VERSION} -X ${module}/internal/version.gitTreeState=clean" \
    "${module}/cmd/helm@${HELM_VERSION}"
fi
"$helm_bin" version --short >&2
echo "$helm_bin"
