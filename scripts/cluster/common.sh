# Sourced by the cluster scripts: versions, addresses and paths shared by all of them.
# shellcheck shell=bash

# Kubernetes v1.30: the newest line whose kubelet still runs on cgroup v1 and with
# containerd 1.6 (Debian 12's). The staging modules in kubernetes/go.mod follow it.
KUBERNETES_VERSION=v1.30.14
# The commands built from the wrapper module in kubernetes/.
KUBERNETES_COMMANDS=(kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl)
# CoreDNS, the cluster's DNS, built the same way (it runs on the host, not in a pod).
COREDNS_VERSION=v1.11.4

# The node: one bridge on the host, which is also the pods' gateway and the node's address.
NODE_NAME=image-cache-node
BRIDGE=icbr0
NODE_IP=10.244.0.1
POD_CIDR=10.244.0.0/24
SERVICE_CIDR=10.96.0.0/16
KUBERNETES_SERVICE_IP=10.96.0.1
# The cluster DNS listens on the node's address; pods get it as their nameserver.
CLUSTER_DNS_IP="$NODE_IP"
CLUSTER_DOMAIN=cluster.local
APISERVER_PORT=6443
ETCD_PORT=2379
# The iptables chains that keep pod traffic on this machine (see up.sh).
EGRESS_CHAIN=IMAGE-CACHE-POD-EGRESS
# The filter-table chain that rejects what is still addressed to the Service CIDR after
# kube-proxy's DNAT (see up.sh), and counts it.
SERVICE_GUARD_CHAIN=IMAGE-CACHE-SERVICE-GUARD

# Built binaries, kept between runs and keyed by version; Go's own build cache
# (`go env GOCACHE`) makes a rebuild after a version change fast as well.
CLUSTER_CACHE="${IMAGE_CACHE_CLUSTER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/image-cache/cluster}"
KUBERNETES_BIN="$CLUSTER_CACHE/kubernetes-$KUBERNETES_VERSION"
COREDNS_BIN="$CLUSTER_CACHE/coredns-$COREDNS_VERSION"

CLUSTER_SCRIPTS="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
