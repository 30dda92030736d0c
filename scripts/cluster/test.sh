#!/usr/bin/env bash
# `npm run test:cluster`: builds what a single-node Kubernetes needs (the Kubernetes commands
# and CoreDNS from the Go module proxy, cached between runs; the service's image and a pause
# image with podman), starts the node (up.sh), runs test/cluster/*.cluster-spec.ts against it
# with Jest, and stops it all (down.sh), whether the specs pass, fail or are interrupted.
# Then it checks that nothing the node started is left: no listener, no bridge, no process.
#
# Needs root, overlayfs, and Debian's etcd-server, containerd, runc,
# containernetworking-plugins, iptables, conntrack, podman and buildah (.ci/run installs
# them). Without root or overlayfs the suite is skipped with the reason, except in CI (CI
# set), where that is a failure.
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/cluster/common.sh

skip() {
  if [[ -n "${CI:-}" ]]; then
    echo "test:cluster cannot run: $*" >&2
    exit 1
  fi
  echo "Skipping the Kubernetes specs: $*" >&2
  exit 0
}
[[ "$(id -u)" == 0 ]] || skip "they need root (a kubelet, containerd and iptables rules)"
grep -qw overlay /proc/filesystems || skip "the kernel has no overlayfs, which containerd's snapshotter needs"
for command in etcd containerd ctr runc iptables conntrack unshare podman buildah gcc openssl curl; do
  command -v "$command" >/dev/null || skip "$command is not installed (see .ci/run for the Debian packages)"
done
[[ -x /usr/lib/cni/bridge ]] || skip "the CNI plugins are not installed (Debian: containernetworking-plugins)"

started=$SECONDS
bash scripts/cluster/build-kubernetes.sh >/dev/null
bash scripts/cluster/build-coredns.sh >/dev/null
HELM="${HELM:-$(bash scripts/install-helm.sh)}"
echo "Kubernetes and CoreDNS built or found in $((SECONDS - started)) s"

dir="$(mktemp -d /tmp/image-cache-cluster.XXXXXX)"
stopped=false
stop_cluster() {
  $stopped && return
  stopped=true
  local at=$SECONDS
  bash scripts/cluster/down.sh "$dir"
  echo "cluster stopped in $((SECONDS - at)) s; its logs: $dir/logs"
}
trap stop_cluster EXIT
trap 'exit 130' INT TERM

started=$SECONDS
image="localhost/image-cache:$(node -p 'require("./package.json").version')"
bash scripts/build-image.sh "$image" >/dev/null
(source scripts/podman/env.sh && podman save --quiet --format oci-archive -o "$dir/image-cache.tar" "$image")
bash scripts/cluster/build-pause-image.sh "$dir/pause.tar"
echo "images built and saved in $((SECONDS - started)) s"

started=$SECONDS
KUBECONFIG="$(bash scripts/cluster/up.sh "$dir" "$dir/pause.tar" "$dir/image-cache.tar")"
rm -f "$dir/pause.tar" "$dir/image-cache.tar"
echo "cluster up in $((SECONDS - started)) s: Kubernetes $KUBERNETES_VERSION, $(containerd --version | cut -d' ' -f3), etcd $(etcd --version | sed -n 's/^etcd Version: //p')"

export KUBECONFIG HELM
export KUBECTL="$KUBERNETES_BIN/kubectl"
export CLUSTER_DIR="$dir" CLUSTER_NODE_IP="$NODE_IP" CLUSTER_POD_CIDR="$POD_CIDR"
export CLUSTER_BRIDGE="$BRIDGE" CLUSTER_EGRESS_CHAIN="$EGRESS_CHAIN" CLUSTER_IMAGE="$image"
export CLUSTER_SERVICE_GUARD_CHAIN="$SERVICE_GUARD_CHAIN" CLUSTER_SERVICE_CIDR="$SERVICE_CIDR"
export KUBERNETES_VERSION
started=$SECONDS
status=0
npx jest --config test/jest-cluster.json "$@" || status=$?
echo "cluster specs took $((SECONDS - started)) s"

stop_cluster
left="$(ss -Hltnu | awk -v node="$NODE_IP" '$5 ~ "^" node ":" || $5 ~ /:(6443|2379|2380|10248|10249|10250|10256|10257|10259)$/')"
if [[ -n "$left" ]]; then
  echo "still listening after the cluster stopped:" >&2
  echo "$left" >&2
  status=1
fi
if ip link show "$BRIDGE" >/dev/null 2>&1; then
  echo "the bridge $BRIDGE is still there after the cluster stopped" >&2
  status=1
fi
if pgrep -f "$dir/" >/dev/null; then
  echo "processes of the cluster are still running:" >&2
  pgrep -af "$dir/" >&2
  status=1
fi
exit "$status"
