#!/usr/bin/env bash
# Stops everything up.sh <dir> started and undoes what it changed on the host, whatever state
# the cluster is in (half started, crashed, or fine): `bash scripts/cluster/down.sh <dir>`.
# By PID, never by name: the daemons in reverse order of start, then every process in the
# pods' cgroups, then containerd's shims (which outlive containerd), containerd and etcd;
# then any process left in the node's mount namespace (its mounts go with it), kube-proxy's
# and the kubelet's iptables rules, the Service CIDR guard (its counter printed), the egress rule, the bridge and its veths, the pods'
# cgroups, and the host settings it changed. Logs stay in <dir>/logs; the rest of <dir> goes.
set -uo pipefail
source "$(dirname "$0")/common.sh"

dir="$(realpath "$1")"
[[ -d "$dir" ]] || exit 0

# stop <name>: SIGTERM, up to 10 s, then SIGKILL.
stop() {
  local pid_file="$dir/pids/$1.pid" pid
  [[ -f "$pid_file" ]] || return 0
  pid="$(cat "$pid_file")"
  if kill -TERM "$pid" 2>/dev/null; then
    for _ in $(seq 100); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null
  fi
  rm -f "$pid_file"
}

kill_all() {
  local pid
  for pid in "$@"; do
    kill -KILL "$pid" 2>/dev/null
  done
}

pod_processes() {
  local hierarchy
  for hierarchy in /sys/fs/cgroup/pids/kubepods /sys/fs/cgroup/memory/kubepods; do
    [[ -d "$hierarchy" ]] && find "$hierarchy" -name cgroup.procs -exec cat {} + 2>/dev/null
  done | sort -u
}

for daemon in coredns kube-proxy kubelet kube-scheduler kube-controller-manager kube-apiserver; do
  stop "$daemon"
done
for _ in 1 2 3; do
  mapfile -t pids < <(pod_processes)
  ((${#pids[@]} == 0)) && break
  kill_all "${pids[@]}"
  sleep 0.3
done
mapfile -t shims < <(pgrep -f "containerd-shim-runc-v2 .*-address $dir/containerd/containerd.sock")
kill_all "${shims[@]}"
stop containerd
stop etcd

if [[ -f "$dir/state/mount-namespace" ]]; then
  namespace="$(cat "$dir/state/mount-namespace")"
  left=()
  for ns in /proc/[0-9]*/ns/mnt; do
    [[ "$(readlink "$ns" 2>/dev/null)" == "$namespace" ]] && left+=("$(cut -d/ -f3 <<<"$ns")")
  done
  kill_all "${left[@]}"
  rm -f "$dir/state/mount-namespace"
fi

# kube-proxy removes its own rules; the kubelet's chains (KUBE-FIREWALL, KUBE-KUBELET-CANARY,
# KUBE-MARK-*...) go the same way as any KUBE-* left: the jumps to them, then the chains.
# up.sh refused to start where KUBE-* chains already existed, so all of them are ours.
if [[ -x "$KUBERNETES_BIN/kube-proxy" ]]; then
  "$KUBERNETES_BIN/kube-proxy" --cleanup >/dev/null 2>&1
fi
for tool in iptables ip6tables; do
  command -v "$tool" >/dev/null || continue
  for table in filter nat mangle raw; do
    "$tool-save" -t "$table" 2>/dev/null | grep '^-A ' | grep -E -- '-j KUBE-|-g KUBE-' | grep -v '^-A KUBE-' |
      while read -r rule; do
        eval "$tool -t $table ${rule/-A /-D }" 2>/dev/null
      done
    mapfile -t chains < <("$tool-save" -t "$table" 2>/dev/null | sed -n 's/^:\(KUBE-[^ ]*\).*/\1/p')
    for chain in "${chains[@]}"; do "$tool" -t "$table" -F "$chain" 2>/dev/null; done
    for chain in "${chains[@]}"; do "$tool" -t "$table" -X "$chain" 2>/dev/null; done
  done
done
if [[ -f "$dir/state/service-guard-chain" ]]; then
  packets="$(iptables -L "$SERVICE_GUARD_CHAIN" -n -v -x 2>/dev/null | awk '$3 == "REJECT" { print $1 }')"
  echo "Service CIDR guard: ${packets:-?} packet(s) to $SERVICE_CIDR had no kube-proxy rule and were rejected rather than leave the machine" >&2
  iptables -D OUTPUT -j "$SERVICE_GUARD_CHAIN" 2>/dev/null
  iptables -D FORWARD -j "$SERVICE_GUARD_CHAIN" 2>/dev/null
  iptables -F "$SERVICE_GUARD_CHAIN" 2>/dev/null
  iptables -X "$SERVICE_GUARD_CHAIN" 2>/dev/null
  rm -f "$dir/state/service-guard-chain"
fi
if [[ -f "$dir/state/egress-chain" ]]; then
  iptables -t mangle -D FORWARD -j "$EGRESS_CHAIN" 2>/dev/null
  iptables -t mangle -F "$EGRESS_CHAIN" 2>/dev/null
  iptables -t mangle -X "$EGRESS_CHAIN" 2>/dev/null
  rm -f "$dir/state/egress-chain"
fi

if [[ -f "$dir/state/bridge" ]]; then
  for link in /sys/class/net/*/master; do
    [[ "$(basename "$(readlink "$link")")" == "$BRIDGE" ]] && ip link del "$(basename "$(dirname "$link")")" 2>/dev/null
  done
  ip link del "$BRIDGE" 2>/dev/null
  rm -f "$dir/state/bridge"
fi

for hierarchy in /sys/fs/cgroup/*/kubepods; do
  [[ -d "$hierarchy" ]] && find "$hierarchy" -depth -type d -exec rmdir {} + 2>/dev/null
done

if [[ -f "$dir/state/sysctls" ]]; then
  while read -r sysctl value; do
    echo "$value" >"/proc/sys/$sysctl" 2>/dev/null
  done <"$dir/state/sysctls"
  rm -f "$dir/state/sysctls"
fi
if [[ -f "$dir/state/created-directories" ]]; then
  while read -r path; do rmdir "$path" 2>/dev/null; done <"$dir/state/created-directories"
  rm -f "$dir/state/created-directories"
fi

# The node's files: containerd's images and snapshots, etcd, the kubelet's pods. Logs stay.
rm -rf "$dir/containerd" "$dir/etcd" "$dir/kubelet" "$dir/cni" "$dir/pki"
exit 0
