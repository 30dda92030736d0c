# Sourced by the container scripts: the podman settings every podman and buildah call uses.
# shellcheck shell=bash
CONTAINERS_CONF="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/containers.conf"
export CONTAINERS_CONF
