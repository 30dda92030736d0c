#!/usr/bin/env bash
# Starts the node's daemons, in order, each once the one before answers: etcd, containerd,
# kube-apiserver, kube-controller-manager, kube-scheduler, kubelet, kube-proxy and CoreDNS.
# up.sh runs it inside a private mount namespace (`unshare -m --propagation private`), so
# the tmpfs mounted here over the host paths that containerd 1.6 and the kubelet hard-code
# are seen by them alone, and go away with the last of their processes. Each daemon runs in
# its own session (setsid), logs to <dir>/logs/<name>.log and leaves its PID in
# <dir>/pids/<name>.pid for down.sh. Configuration files are written by up.sh.
set -euo pipefail
source "$(dirname "$0")/common.sh"

dir="$1"
kubectl=("$KUBERNETES_BIN/kubectl" --kubeconfig "$dir/pki/admin.kubeconfig")
mkdir -p "$dir/logs" "$dir/pids"

for path in /run/containerd /var/lib/kubelet /var/lib/cni /var/log/pods /var/log/containers; do
  mount -t tmpfs -o size=64m,mode=0755 image-cache-node "$path"
done
# Mounts made by containerd and the kubelet (overlay root filesystems, network namespaces,
# tmpfs volumes) stay in this namespace too.
mount --make-rprivate /

start() {
  local name="$1"
  shift
  setsid "$@" >"$dir/logs/$name.log" 2>&1 </dev/null &
  echo $! >"$dir/pids/$name.pid"
}

# wait_for <what> <seconds> <command...>: polls the command every 0.2 s.
wait_for() {
  local what="$1" seconds="$2"
  shift 2
  local deadline=$((SECONDS + seconds))
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS > deadline)); then
      echo "$what did not come up within $seconds s; see $dir/logs" >&2
      return 1
    fi
    sleep 0.2
  done
}

start etcd etcd --name image-cache-node --data-dir "$dir/etcd" \
  --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
  --listen-peer-urls "http://127.0.0.1:$((ETCD_PORT + 1))" \
  --initial-advertise-peer-urls "http://127.0.0.1:$((ETCD_PORT + 1))" \
  --initial-cluster "image-cache-node=http://127.0.0.1:$((ETCD_PORT + 1))" \
  --listen-metrics-urls "" --log-level warn
start containerd containerd --config "$dir/containerd/config.toml"
wait_for etcd 30 curl -sf "http://127.0.0.1:$ETCD_PORT/health"
wait_for containerd 30 ctr --address "$dir/containerd/containerd.sock" version

pki="$dir/pki"
start kube-apiserver "$KUBERNETES_BIN/kube-apiserver" \
  --bind-address "$NODE_IP" --advertise-address "$NODE_IP" --secure-port "$APISERVER_PORT" \
  --etcd-servers "http://127.0.0.1:$ETCD_PORT" \
  --service-cluster-ip-range "$SERVICE_CIDR" \
  --authorization-mode Node,RBAC --enable-admission-plugins NodeRestriction \
  --client-ca-file "$pki/ca.crt" --tls-cert-file "$pki/apiserver.crt" --tls-private-key-file "$pki/apiserver.key" \
  --kubelet-client-certificate "$pki/apiserver-kubelet-client.crt" \
  --kubelet-client-key "$pki/apiserver-kubelet-client.key" \
  --kubelet-preferred-address-types InternalIP \
  --service-account-issuer "https://kubernetes.default.svc.$CLUSTER_DOMAIN" \
  --service-account-key-file "$pki/sa.pub" --service-account-signing-key-file "$pki/sa.key" \
  --allow-privileged=false --profiling=false --endpoint-reconciler-type lease
wait_for kube-apiserver 60 "${kubectl[@]}" get --raw /readyz

start kube-controller-manager "$KUBERNETES_BIN/kube-controller-manager" \
  --kubeconfig "$pki/controller-manager.kubeconfig" \
  --authentication-kubeconfig "$pki/controller-manager.kubeconfig" \
  --authorization-kubeconfig "$pki/controller-manager.kubeconfig" \
  --bind-address 127.0.0.1 --leader-elect=false --use-service-account-credentials \
  --service-account-private-key-file "$pki/sa.key" --root-ca-file "$pki/ca.crt" \
  --cluster-signing-cert-file "$pki/ca.crt" --cluster-signing-key-file "$pki/ca.key" \
  --service-cluster-ip-range "$SERVICE_CIDR" --profiling=false
start kube-scheduler "$KUBERNETES_BIN/kube-scheduler" \
  --kubeconfig "$pki/scheduler.kubeconfig" \
  --authentication-kubeconfig "$pki/scheduler.kubeconfig" \
  --authorization-kubeconfig "$pki/scheduler.kubeconfig" \
  --bind-address 127.0.0.1 --leader-elect=false --profiling=false
start kubelet "$KUBERNETES_BIN/kubelet" \
  --config "$dir/kubelet/config.yaml" --kubeconfig "$pki/kubelet.kubeconfig" \
  --root-dir "$dir/kubelet/root" --cert-dir "$dir/kubelet/pki" \
  --node-ip "$NODE_IP" --hostname-override "$NODE_NAME"
start kube-proxy "$KUBERNETES_BIN/kube-proxy" --config "$dir/kube-proxy.yaml"

# CoreDNS answers for cluster.local from the API; it reads Services and EndpointSlices.
"${kubectl[@]}" apply -f - >/dev/null <<'YAML'
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: image-cache:coredns
rules:
  - apiGroups: [""]
    resources: [endpoints, services, pods, namespaces]
    verbs: [list, watch]
  - apiGroups: [discovery.k8s.io]
    resources: [endpointslices]
    verbs: [list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: image-cache:coredns
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: image-cache:coredns
subjects:
  - apiGroup: rbac.authorization.k8s.io
    kind: User
    name: image-cache:coredns
YAML
start coredns "$COREDNS_BIN/coredns" -conf "$dir/Corefile"
