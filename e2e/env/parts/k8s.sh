# The Kubernetes control plane: certificates made on the spot, etcd, kube-apiserver
# (RBAC, service-account issuer) and kube-controller-manager, all on 127.0.0.1.

PKI="$RUN_DIR/pki"
ADMIN_KUBECONFIG="$PKI/admin.kubeconfig"

# make_cert NAME SUBJECT [SAN]: a key and a certificate signed by the run's CA.
make_cert() {
  local name="$1" subj="$2" san="${3:-}"
  openssl genrsa -out "$PKI/$name.key" 2048 2>/dev/null
  openssl req -new -key "$PKI/$name.key" -subj "$subj" -out "$PKI/$name.csr" 2>/dev/null
  local ext="$PKI/$name.ext"
  {
    echo "basicConstraints=CA:FALSE"
    echo "keyUsage=critical,digitalSignature,keyEncipherment"
    if [ -n "$san" ]; then
      echo "extendedKeyUsage=serverAuth,clientAuth"
      echo "subjectAltName=$san"
    else
      echo "extendedKeyUsage=clientAuth"
    fi
  } >"$ext"
  openssl x509 -req -in "$PKI/$name.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" -CAcreateserial \
    -days 30 -sha256 -extfile "$ext" -out "$PKI/$name.crt" 2>/dev/null
  rm -f "$PKI/$name.csr" "$ext"
}

# write_kubeconfig FILE CERTNAME: a kubeconfig with the certificates embedded.
write_kubeconfig() {
  local file="$1" cert="$2"
  cat >"$file" <<KUBECONFIG
apiVersion: v1
kind: Config
clusters:
- name: riskpipe-e2e
  cluster:
    server: https://127.0.0.1:$APISERVER_PORT
    certificate-authority-data: $(base64 -w0 "$PKI/ca.crt")
users:
- name: $cert
  user:
    client-certificate-data: $(base64 -w0 "$PKI/$cert.crt")
    client-key-data: $(base64 -w0 "$PKI/$cert.key")
contexts:
- name: riskpipe-e2e
  context:
    cluster: riskpipe-e2e
    user: $cert
current-context: riskpipe-e2e
KUBECONFIG
  chmod 600 "$file"
}

generate_pki() {
  command -v openssl >/dev/null 2>&1 || env_die "openssl missing (apt package openssl)"
  mkdir -p "$PKI"
  openssl req -x509 -newkey rsa:2048 -nodes -keyout "$PKI/ca.key" -out "$PKI/ca.crt" \
    -days 30 -subj "/CN=riskpipe-e2e-ca" 2>/dev/null
  make_cert apiserver "/CN=kube-apiserver" \
    "IP:127.0.0.1,IP:$SERVICE_APISERVER_IP,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
  # system:masters: the admin kubeconfig used by tests, kubectl, helm and the pod runner.
  make_cert admin "/O=system:masters/CN=riskpipe-e2e-admin"
  # The controller manager's own identity, bound by the default RBAC policy.
  make_cert kube-controller-manager "/CN=system:kube-controller-manager"
  # The aggregation layer's client (front proxy); components expect its CA published.
  make_cert front-proxy-client "/CN=front-proxy-client"
  # Service-account token signing key pair.
  openssl genrsa -out "$PKI/sa.key" 2048 2>/dev/null
  openssl rsa -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub" 2>/dev/null
  write_kubeconfig "$ADMIN_KUBECONFIG" admin
  write_kubeconfig "$PKI/kube-controller-manager.kubeconfig" kube-controller-manager
}

start_etcd() {
  mkdir -p "$RUN_DIR/etcd"
  start_bg etcd "$LOG_DIR/etcd.log" "$ETCD" \
    --name e2e \
    --data-dir "$RUN_DIR/etcd" \
    --listen-client-urls "http://127.0.0.1:$ETCD_PORT" \
    --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster "e2e=http://127.0.0.1:$ETCD_PEER_PORT" \
    --unsafe-no-fsync
}

etcd_ready() { curl -fsS "http://127.0.0.1:$ETCD_PORT/health" | grep -q '"health":"true"'; }

start_apiserver() {
  start_bg kube-apiserver "$LOG_DIR/kube-apiserver.log" "$K8S_BIN_DIR/kube-apiserver" \
    --etcd-servers "http://127.0.0.1:$ETCD_PORT" \
    --bind-address 127.0.0.1 \
    --advertise-address 127.0.0.1 \
    --secure-port "$APISERVER_PORT" \
    --tls-cert-file "$PKI/apiserver.crt" \
    --tls-private-key-file "$PKI/apiserver.key" \
    --client-ca-file "$PKI/ca.crt" \
    --authorization-mode Node,RBAC \
    --service-account-issuer https://kubernetes.default.svc.cluster.local \
    --service-account-key-file "$PKI/sa.pub" \
    --service-account-signing-key-file "$PKI/sa.key" \
    --service-cluster-ip-range "$SERVICE_CIDR" \
    --endpoint-reconciler-type none \
    --requestheader-client-ca-file "$PKI/ca.crt" \
    --requestheader-allowed-names front-proxy-client \
    --requestheader-username-headers X-Remote-User \
    --requestheader-group-headers X-Remote-Group \
    --requestheader-extra-headers-prefix X-Remote-Extra- \
    --proxy-client-cert-file "$PKI/front-proxy-client.crt" \
    --proxy-client-key-file "$PKI/front-proxy-client.key" \
    --allow-privileged=true \
    --profiling=false
}

apiserver_ready() {
  [ "$(curl -fsS --cacert "$PKI/ca.crt" --cert "$PKI/admin.crt" --key "$PKI/admin.key" \
    "https://127.0.0.1:$APISERVER_PORT/readyz")" = "ok" ]
}

start_controller_manager() {
  local kc="$PKI/kube-controller-manager.kubeconfig"
  start_bg kube-controller-manager "$LOG_DIR/kube-controller-manager.log" "$K8S_BIN_DIR/kube-controller-manager" \
    --kubeconfig "$kc" \
    --authentication-kubeconfig "$kc" \
    --authorization-kubeconfig "$kc" \
    --bind-address 127.0.0.1 \
    --secure-port "$KCM_PORT" \
    --cert-dir "$RUN_DIR/kcm-certs" \
    --service-account-private-key-file "$PKI/sa.key" \
    --root-ca-file "$PKI/ca.crt" \
    --use-service-account-credentials=true \
    --cluster-signing-cert-file "$PKI/ca.crt" \
    --cluster-signing-key-file "$PKI/ca.key" \
    --service-cluster-ip-range "$SERVICE_CIDR" \
    --leader-elect=false \
    --profiling=false
}

controller_manager_ready() { [ "$(curl -fsSk "https://127.0.0.1:$KCM_PORT/healthz")" = "ok" ]; }

# The default ServiceAccount exists once the controller manager's token and
# service-account controllers run: Pods can be created from then on.
default_sa_ready() { "$KUBECTL" --kubeconfig "$ADMIN_KUBECONFIG" -n default get serviceaccount default; }
