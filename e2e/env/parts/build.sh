# Builds (once per version) the Go binaries of the environment: kube-apiserver,
# kube-controller-manager, etcd, Helm, and kubectl unless the machine's matches.
# Sets K8S_BIN_DIR, ETCD, HELM, KUBECTL.

ensure_go_binaries() {
  command -v go >/dev/null 2>&1 || env_die "go not found: this environment builds Kubernetes with the machine's Go (>= the version in e2e/k8s/go.mod)"
  go_env
  local kv ev hv
  kv="$(k8s_version)"
  ev="$(etcd_version)"
  hv="$(helm_version)"
  [ -n "$kv" ] && [ -n "$ev" ] && [ -n "$hv" ] || env_die "cannot read pinned versions from $E2E_DIR/k8s/go.mod"
  K8S_BIN_DIR="$ENV_HOME/bin/kubernetes-$kv"
  local etcd_dir="$ENV_HOME/bin/etcd-$ev" helm_dir="$ENV_HOME/bin/helm-$hv"
  ETCD="$etcd_dir/etcd"
  HELM="$helm_dir/helm"

  local minor="${kv#v1.}"
  minor="${minor%%.*}"
  KUBECTL=""
  local machine_kubectl
  machine_kubectl="$(command -v kubectl || true)"
  if [ -n "$machine_kubectl" ]; then
    local m
    m="$("$machine_kubectl" version --client -o json 2>/dev/null | sed -n 's/.*"minor": *"\([0-9]*\).*/\1/p' | head -n 1)"
    # kubectl supports one minor version of skew either way.
    if [ -n "$m" ] && [ "$m" -ge $((minor - 1)) ] && [ "$m" -le $((minor + 1)) ]; then
      KUBECTL="$machine_kubectl"
    elif [ ! -x "$K8S_BIN_DIR/kubectl" ]; then
      env_log "machine's kubectl ($machine_kubectl, 1.${m:-?}) is outside 1.$((minor - 1))-1.$((minor + 1)): building kubectl $kv"
    fi
  fi

  local pkgs=()
  [ -x "$K8S_BIN_DIR/kube-apiserver" ] || pkgs+=(k8s.io/kubernetes/cmd/kube-apiserver)
  [ -x "$K8S_BIN_DIR/kube-controller-manager" ] || pkgs+=(k8s.io/kubernetes/cmd/kube-controller-manager)
  if [ -z "$KUBECTL" ]; then
    KUBECTL="$K8S_BIN_DIR/kubectl"
    [ -x "$KUBECTL" ] || pkgs+=(k8s.io/kubernetes/cmd/kubectl)
  fi
  [ -x "$ETCD" ] || pkgs+=(go.etcd.io/etcd/server/v3)
  [ -x "$HELM" ] || pkgs+=(helm.sh/helm/v4/cmd/helm)
  [ "${#pkgs[@]}" -eq 0 ] && return 0

  env_log "building ${pkgs[*]} (Kubernetes $kv, etcd $ev, Helm $hv; cold: ~8 min of 2 cores) — log: $BUILD_LOG_DIR/go-build.log"
  local out="$ENV_HOME/bin/.build-$$"
  rm -rf "$out"
  mkdir -p "$out" "$BUILD_LOG_DIR"
  local cv="k8s.io/component-base/version"
  local ldflags="-s -w -X $cv.gitVersion=$kv -X $cv.gitMajor=1 -X $cv.gitMinor=$minor -X $cv.gitTreeState=clean"
  ldflags="$ldflags -X helm.sh/helm/v4/internal/version.version=$hv"
  local start=$SECONDS
  if ! (cd "$E2E_DIR/k8s" && nice -n 10 go build -trimpath -ldflags "$ldflags" -o "$out/" "${pkgs[@]}") >"$BUILD_LOG_DIR/go-build.log" 2>&1; then
    tail -n 30 "$BUILD_LOG_DIR/go-build.log" >&2
    env_die "go build failed; see $BUILD_LOG_DIR/go-build.log"
  fi
  env_log "go build took $((SECONDS - start))s"
  mkdir -p "$K8S_BIN_DIR" "$etcd_dir" "$helm_dir"
  local f
  for f in kube-apiserver kube-controller-manager kubectl; do
    [ -f "$out/$f" ] && mv "$out/$f" "$K8S_BIN_DIR/$f"
  done
  # `go build` names etcd's main package after its module folder.
  [ -f "$out/server" ] && mv "$out/server" "$ETCD"
  [ -f "$out/helm" ] && mv "$out/helm" "$HELM"
  rm -rf "$out"
}

# Builds the pod runner and the helper binary the smoke tests run as Pods.
ensure_rust_binaries() {
  command -v cargo >/dev/null 2>&1 || env_die "cargo not found: install Rust with rustup"
  riskpipe_build_deps
  PODRUNNER_BIN_DIR="$CARGO_TARGET_DIR/debug"
  env_log "building riskpipe-podrunner and riskpipe-e2e-helper — log: $BUILD_LOG_DIR/cargo-build.log"
  mkdir -p "$BUILD_LOG_DIR"
  if ! (cd "$E2E_DIR/.." && cargo build --locked -p riskpipe-e2e --bins) >"$BUILD_LOG_DIR/cargo-build.log" 2>&1; then
    tail -n 30 "$BUILD_LOG_DIR/cargo-build.log" >&2
    env_die "cargo build of the pod runner failed; see $BUILD_LOG_DIR/cargo-build.log"
  fi
}
