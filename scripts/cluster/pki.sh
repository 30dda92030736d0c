#!/usr/bin/env bash
# Makes the cluster's certificates and kubeconfigs under <dir>/pki: `bash pki.sh <dir>`.
# One CA signs the apiserver's serving certificate and a client certificate per component,
# whose subject is the identity RBAC and the Node authorizer know it by (as kubeadm does).
set -euo pipefail
source "$(dirname "$0")/common.sh"

pki="$1/pki"
mkdir -p "$pki"
cd "$pki"
umask 077

openssl_quiet() { openssl "$@" 2>/dev/null; }

openssl_quiet req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 2 \
  -subj "/CN=image-cache-test-ca" \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"

# issue <name> <subject> <extendedKeyUsage> [subjectAltName]
issue() {
  local name="$1" subject="$2" usage="$3" san="${4:-}"
  local extensions="basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=$usage"
  [[ -n "$san" ]] && extensions+=$'\n'"subjectAltName=$san"
  openssl_quiet req -newkey rsa:2048 -nodes -keyout "$name.key" -out "$name.csr" -subj "$subject"
  openssl_quiet x509 -req -in "$name.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 \
    -out "$name.crt" -extfile <(printf '%s\n' "$extensions")
  rm "$name.csr"
}

issue apiserver "/CN=kube-apiserver" serverAuth \
  "IP:$NODE_IP,IP:127.0.0.1,IP:$KUBERNETES_SERVICE_IP,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.$CLUSTER_DOMAIN"
issue apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" clientAuth
issue admin "/O=system:masters/CN=image-cache-test-admin" clientAuth
issue controller-manager "/CN=system:kube-controller-manager" clientAuth
issue scheduler "/CN=system:kube-scheduler" clientAuth
issue kubelet "/O=system:nodes/CN=system:node:$NODE_NAME" clientAuth
issue kube-proxy "/CN=system:kube-proxy" clientAuth
# CoreDNS reads Services and EndpointSlices; up.sh binds this user to a role that allows it.
issue coredns "/CN=image-cache:coredns" clientAuth

# The service-account token signing key pair.
openssl_quiet genrsa -out sa.key 2048
openssl_quiet rsa -in sa.key -pubout -out sa.pub

for user in admin controller-manager scheduler kubelet kube-proxy coredns; do
  cat >"$user.kubeconfig" <<KUBECONFIG
apiVersion: v1
kind: Config
clusters:
  - name: image-cache-test
    cluster:
      server: https://$NODE_IP:$APISERVER_PORT
      certificate-authority: $pki/ca.crt
users:
  - name: $user
    user:
      client-certificate: $pki/$user.crt
      client-key: $pki/$user.key
contexts:
  - name: $user
    context:
      cluster: image-cache-test
      user: $user
current-context: $user
KUBECONFIG
done
