#!/usr/bin/env bash
# Starts a single-node Kubernetes cluster whose files all live under <dir>:
#   bash scripts/cluster/up.sh <dir> <image-archive>...
# The binaries come from build-kubernetes.sh and build-coredns.sh; each image archive (an OCI
# archive from `podman save`) is imported into the node's containerd, since the node pulls
# nothing. Prints nothing on success but the admin kubeconfig's path. down.sh <dir> stops it
# all, and must be run even when this fails half-way.
#
# The pod network stays on this machine: the pods sit on one bridge (BRIDGE, NODE_IP/24) that
# routes nowhere else, the CNI plugin masquerades nothing, and before the first pod starts a
# rule drops every packet from the bridge whose destination is outside the pod range (in the
# mangle table's FORWARD, which every packet crossing the host meets before the filter rules
# kube-proxy and others add). Services and the cluster DNS answer on this host alone.
set -euo pipefail
source "$(dirname "$0")/common.sh"

dir="$(realpath "$1")"
shift
mkdir -p "$dir/state" "$dir/logs"

fail() {
  echo "cluster: $*" >&2
  exit 1
}

# What up.sh changes on the host, for down.sh to undo.
for sysctl in vm/overcommit_memory kernel/panic kernel/panic_on_oops vm/panic_on_oom \
  net/bridge/bridge-nf-call-iptables net/ipv4/ip_forward; do
  if [[ -e "/proc/sys/$sysctl" ]]; then
    echo "$sysctl $(cat "/proc/sys/$sysctl")" >>"$dir/state/sysctls"
  fi
done
for path in /run/containerd /var/lib/kubelet /var/lib/cni /var/log/pods /var/log/containers; do
  if [[ ! -d "$path" ]]; then
    mkdir -p "$path"
    echo "$path" >>"$dir/state/created-directories"
  fi
done

if ip link show "$BRIDGE" >/dev/null 2>&1; then
  fail "the bridge $BRIDGE already exists: another test cluster is running, or one was not stopped (bash scripts/cluster/down.sh <its dir>)"
fi
if iptables-save | grep -q '^:KUBE-'; then
  fail "iptables already has KUBE-* chains: another Kubernetes node runs on this machine"
fi
ip link add "$BRIDGE" type bridge
touch "$dir/state/bridge"
ip addr add "$NODE_IP/${POD_CIDR#*/}" dev "$BRIDGE"
ip link set "$BRIDGE" up

iptables -t mangle -N "$EGRESS_CHAIN"
iptables -t mangle -A "$EGRESS_CHAIN" -i "$BRIDGE" ! -d "$POD_CIDR" -j DROP \
  -m comment --comment "image-cache test cluster: no pod packet leaves the machine"
iptables -t mangle -I FORWARD 1 -j "$EGRESS_CHAIN"
touch "$dir/state/egress-chain"
# A ClusterIP is only a kube-proxy DNAT rule. Until kube-proxy has one for a Service (before
# its first sync, after a restart), a packet to a ClusterIP would be routed like any private
# address: off the machine by the default route. The filter table sees a packet after the nat
# table's DNAT, so whatever still has a Service address here had no rule: rejected, counted,
# and the counter printed by down.sh. In place before the first pod, for the host's own
# packets (OUTPUT) and the pods' (FORWARD).
iptables -N "$SERVICE_GUARD_CHAIN"
iptables -A "$SERVICE_GUARD_CHAIN" -d "$SERVICE_CIDR" -j REJECT --reject-with icmp-net-unreachable \
  -m comment --comment "image-cache test cluster: nothing addressed to a Service leaves the machine"
iptables -I OUTPUT 1 -j "$SERVICE_GUARD_CHAIN"
iptables -I FORWARD 1 -j "$SERVICE_GUARD_CHAIN"
touch "$dir/state/service-guard-chain"
# kube-proxy's Services and pod-to-pod traffic across the bridge go through iptables.
echo 1 >/proc/sys/net/bridge/bridge-nf-call-iptables
echo 1 >/proc/sys/net/ipv4/ip_forward

bash "$CLUSTER_SCRIPTS/pki.sh" "$dir"

mkdir -p "$dir/containerd" "$dir/cni/net.d" "$dir/kubelet"
cat >"$dir/containerd/config.toml" <<TOML
version = 2
root = "$dir/containerd/root"
state = "$dir/containerd/state"
# Plugins that would write outside <dir> or that the node does not use.
disabled_plugins = ["io.containerd.internal.v1.opt", "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.tracing.processor.v1.otlp"]

[grpc]
  address = "$dir/containerd/containerd.sock"

[ttrpc]
  address = "$dir/containerd/containerd.sock.ttrpc"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "localhost/image-cache-pause:1"
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  # This machine has no CAP_SYS_RESOURCE to lower a process's OOM score adjustment.
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$dir/cni/net.d"
    max_conf_num = 1
TOML

cat >"$dir/cni/net.d/10-image-cache.conflist" <<JSON
{
  "cniVersion": "1.0.0",
  "name": "image-cache-pods",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$BRIDGE",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "ranges": [[{ "subnet": "$POD_CIDR", "gateway": "$NODE_IP" }]],
        "routes": [{ "dst": "0.0.0.0/0" }],
        "dataDir": "$dir/cni/ipam"
      }
    },
    { "type": "portmap", "capabilities": { "portMappings": true }, "snat": false }
  ]
}
JSON

# Pods resolve through the cluster DNS only: no nameserver of the host's is handed to them.
: >"$dir/kubelet/resolv.conf"
cat >"$dir/kubelet/config.yaml" <<YAML
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $NODE_IP
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
authentication:
  anonymous:
    enabled: false
  webhook:
    enabled: true
  x509:
    clientCAFile: $dir/pki/ca.crt
authorization:
  mode: Webhook
# PID 1 here is not systemd.
cgroupDriver: cgroupfs
failSwapOn: false
containerRuntimeEndpoint: unix://$dir/containerd/containerd.sock
clusterDNS: [$CLUSTER_DNS_IP]
clusterDomain: $CLUSTER_DOMAIN
resolvConf: $dir/kubelet/resolv.conf
# A busy shared disk must not make the kubelet evict the test's pods; an emptyDir past its
# sizeLimit still gets its pod evicted, which is what the sizeLimit test watches for.
evictionHard:
  memory.available: "100Mi"
  nodefs.available: "1%"
  nodefs.inodesFree: "1%"
  imagefs.available: "1%"
# How often emptyDir usage is measured (default 1 m), so a sizeLimit is enforced within seconds.
volumeStatsAggPeriod: 10s
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
serializeImagePulls: false
maxPods: 30
YAML

cat >"$dir/kube-proxy.yaml" <<YAML
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection:
  kubeconfig: $dir/pki/kube-proxy.kubeconfig
hostnameOverride: $NODE_NAME
mode: iptables
clusterCIDR: $POD_CIDR
bindAddress: $NODE_IP
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
# NodePorts answer on the bridge only, never on the host's other addresses.
nodePortAddresses: ["$NODE_IP/32"]
conntrack:
  # Leave the host's conntrack table size alone.
  maxPerCore: 0
YAML

cat >"$dir/Corefile" <<COREFILE
$CLUSTER_DOMAIN:53 in-addr.arpa:53 ip6.arpa:53 {
  bind $CLUSTER_DNS_IP
  errors
  kubernetes $CLUSTER_DOMAIN in-addr.arpa ip6.arpa {
    kubeconfig $dir/pki/coredns.kubeconfig
    fallthrough in-addr.arpa ip6.arpa
  }
}
# Any other name: refused. Nothing is forwarded off this machine.
.:53 {
  bind $CLUSTER_DNS_IP
  errors
}
COREFILE

unshare -m --propagation private bash "$CLUSTER_SCRIPTS/node.sh" "$dir"
# The namespace's identity, for down.sh to find any process still inside it.
readlink "/proc/$(cat "$dir/pids/containerd.pid")/ns/mnt" >"$dir/state/mount-namespace"

for archive in "$@"; do
  ctr --address "$dir/containerd/containerd.sock" -n k8s.io images import --all-platforms "$archive" >/dev/null
done

kubectl=("$KUBERNETES_BIN/kubectl" --kubeconfig "$dir/pki/admin.kubeconfig")
deadline=$((SECONDS + 90))
until "${kubectl[@]}" wait --for=condition=Ready "node/$NODE_NAME" --timeout=5s >/dev/null 2>&1; do
  ((SECONDS < deadline)) || fail "the node did not turn Ready within 90 s; see $dir/logs/kubelet.log"
  sleep 1
done
# Pods are admitted only once their namespace's default ServiceAccount exists.
until "${kubectl[@]}" get serviceaccount default >/dev/null 2>&1; do
  ((SECONDS < deadline)) || fail "the default ServiceAccount was not created; see $dir/logs/kube-controller-manager.log"
  sleep 0.5
done
echo "$dir/pki/admin.kubeconfig"
