#!/usr/bin/env bash
# A real Kubernetes control plane for the cluster e2e tests, on loopback only:
# etcd, kube-apiserver and kube-controller-manager, built from their published Go
# modules (e2e/k8s/go.mod pins the versions). There is no kubelet and no scheduler.
#
#   k8s.sh install   build the three binaries into $SPILLWAY_TOOLS/k8s-<version>/ (once)
#   k8s.sh start     make certs and kubeconfigs under $SPILLWAY_RUN/k8s, start the three
#                    servers (each once), wait for /readyz; prints the environment to eval
#   k8s.sh stop      stop exactly the pids recorded in $SPILLWAY_RUN/k8s/*.pid
#   k8s.sh env       print the environment: eval "$(e2e/scripts/k8s.sh env)"
#
# Ports (override to run two suites side by side, together with SPILLWAY_RUN):
# SPILLWAY_K8S_PORT (apiserver, 16443), SPILLWAY_K8S_ETCD_PORT (etcd clients, 16379),
# SPILLWAY_K8S_ETCD_PEER_PORT (16380), SPILLWAY_K8S_KCM_PORT (controller manager, 16257).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=env.sh
source "$here/env.sh"
log() { printf '[k8s] %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

module="$(cd "$here/../k8s" && pwd)"
k8s_version="$(awk '$1 == "k8s.io/kubernetes" { print $2; exit }' "$module/go.mod")"
etcd_version="$(awk '$1 == "go.etcd.io/etcd/server/v3" { print $2; exit }' "$module/go.mod")"
[[ -n "$k8s_version" && -n "$etcd_version" ]] || die "cannot read the versions from $module/go.mod"
bin="$SPILLWAY_TOOLS/k8s-$k8s_version"
run="$SPILLWAY_RUN/k8s"
pki="$run/pki"
api_port="${SPILLWAY_K8S_PORT:-16443}"
etcd_port="${SPILLWAY_K8S_ETCD_PORT:-16379}"
etcd_peer_port="${SPILLWAY_K8S_ETCD_PEER_PORT:-16380}"
kcm_port="${SPILLWAY_K8S_KCM_PORT:-16257}"
api_url="https://127.0.0.1:$api_port"
service_cidr="10.96.0.0/16"
service_ip="10.96.0.1" # the first service IP: the in-cluster address of the "kubernetes" Service
admin_kubeconfig="$run/admin.kubeconfig"
kcm_kubeconfig="$run/controller-manager.kubeconfig"

# ---------------------------------------------------------------- install

# Bump when the go build command below changes, so built binaries are rebuilt.
build_rev=1

# The stamp holds a hash of everything the build reads (go.mod, go.sum, the mains, the Go
# toolchain, build_rev): a change rebuilds, an unchanged tree is a no-op.
source_hash() {
  (cd "$module" && cat go.mod go.sum cmd/*/main.go && go version && echo "$build_rev") \
    | sha256sum | cut -d' ' -f1
}

install() {
  command -v go >/dev/null || die "go is missing (Go 1.24 or newer is needed to build $k8s_version)"
  local stamp="$bin/.built" want
  want="$(source_hash)"
  if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]] \
     && [[ -x "$bin/etcd" && -x "$bin/kube-apiserver" && -x "$bin/kube-controller-manager" ]]; then
    log "k8s $k8s_version and etcd $etcd_version already built in $bin"
    return
  fi
  log "building etcd $etcd_version, kube-apiserver and kube-controller-manager $k8s_version into $bin"
  log "(cold: about 12 CPU-minutes, 8-16 minutes on 2 cores; the Go caches under $SPILLWAY_CACHE/go make it a no-op later)"
  local minor="${k8s_version#v1.}"; minor="${minor%%.*}"
  local x="" pkg
  # The version the binaries report (/version, kubectl version), as the Kubernetes release build sets it.
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    x+=" -X $pkg.gitVersion=$k8s_version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean"
  done
  mkdir -p "$bin" "$SPILLWAY_CACHE/go/mod" "$SPILLWAY_CACHE/go/build"
  rm -f "$stamp"
  local start=$SECONDS
  (cd "$module" && GOMODCACHE="$SPILLWAY_CACHE/go/mod" GOCACHE="$SPILLWAY_CACHE/go/build" \
     GOTOOLCHAIN=local GOFLAGS="-mod=readonly -buildvcs=false" CGO_ENABLED=0 \
     go build -trimpath -ldflags="-s -w$x" -o "$bin/" ./cmd/...)
  printf '%s\n' "$want" >"$stamp"
  log "built etcd, kube-apiserver and kube-controller-manager in $((SECONDS - start))s"
}

# ---------------------------------------------------------------- certificates

# make_ca NAME CN: a self-signed CA, kept when present. A new one invalidates every
# certificate the old one signed ($pki/NAME.issued lists them): those are made again.
make_ca() {
  [[ -f "$pki/$1.crt" && -f "$pki/$1.key" ]] && return
  local name
  if [[ -f "$pki/$1.issued" ]]; then
    while read -r name; do rm -f "$pki/$name.crt" "$pki/$name.key"; done <"$pki/$1.issued"
  fi
  rm -f "$pki/$1.issued" "$pki/$1.srl"
  openssl req -x509 -new -nodes -newkey rsa:2048 -sha256 -days 3650 \
    -subj "/CN=$2" -keyout "$pki/$1.key" -out "$pki/$1.crt" \
    -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" 2>/dev/null
}

# sign CA NAME CN O EXT: a key and a certificate signed by CA, kept when present.
sign() {
  local ca="$1" name="$2" cn="$3" org="$4" ext="$5" subj="/CN=$3"
  [[ -f "$pki/$name.crt" && -f "$pki/$name.key" ]] && return
  [[ -n "$org" ]] && subj="/O=$org/CN=$cn"
  openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$pki/$name.key" 2>/dev/null
  openssl req -new -key "$pki/$name.key" -subj "$subj" -out "$pki/$name.csr"
  printf '%s\n' "$ext" >"$pki/$name.ext"
  openssl x509 -req -in "$pki/$name.csr" -CA "$pki/$ca.crt" -CAkey "$pki/$ca.key" -CAcreateserial \
    -days 3650 -sha256 -extfile "$pki/$name.ext" -out "$pki/$name.crt" 2>/dev/null
  rm -f "$pki/$name.csr" "$pki/$name.ext"
  printf '%s\n' "$name" >>"$pki/$ca.issued"
}

make_pki() {
  mkdir -p "$pki"
  chmod 700 "$run" "$pki"
  make_ca ca spillway-e2e-ca
  # The front-proxy CA signs the apiserver's client certificate for aggregated APIs; the
  # controller manager's delegated authentication expects it in extension-apiserver-authentication.
  make_ca front-proxy-ca spillway-e2e-front-proxy-ca
  local leaf="basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment"
  sign ca apiserver kube-apiserver "" "$leaf
extendedKeyUsage=serverAuth
subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,IP:$service_ip"
  # etcd's one certificate serves clients and its (loopback, single-member) peer port.
  sign ca etcd etcd "" "$leaf
extendedKeyUsage=serverAuth,clientAuth
subjectAltName=IP:127.0.0.1,DNS:localhost"
  sign ca controller-manager-serving kube-controller-manager "" "$leaf
extendedKeyUsage=serverAuth
subjectAltName=IP:127.0.0.1,DNS:localhost"
  sign ca apiserver-etcd-client kube-apiserver-etcd-client "" "$leaf
extendedKeyUsage=clientAuth"
  sign ca admin spillway-e2e-admin system:masters "$leaf
extendedKeyUsage=clientAuth"
  sign ca controller-manager system:kube-controller-manager "" "$leaf
extendedKeyUsage=clientAuth"
  sign front-proxy-ca front-proxy-client front-proxy-client "" "$leaf
extendedKeyUsage=clientAuth"
  if [[ ! -f "$pki/sa.key" || ! -f "$pki/sa.pub" ]]; then
    openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$pki/sa.key" 2>/dev/null
    openssl pkey -in "$pki/sa.key" -pubout -out "$pki/sa.pub"
  fi
  chmod 600 "$pki"/*.key
  kubeconfig "$admin_kubeconfig" admin spillway-e2e-admin
  kubeconfig "$kcm_kubeconfig" controller-manager system:kube-controller-manager
}

b64() { base64 -w0 <"$1"; }

# kubeconfig FILE CERT USER: embeds the CA and the client certificate, so the file can be copied.
kubeconfig() {
  local file="$1" tmp
  tmp="$(mktemp "$run/.kubeconfig.XXXXXX")"
  cat >"$tmp" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: spillway-e2e
  cluster:
    server: $api_url
    certificate-authority-data: $(b64 "$pki/ca.crt")
users:
- name: $3
  user:
    client-certificate-data: $(b64 "$pki/$2.crt")
    client-key-data: $(b64 "$pki/$2.key")
contexts:
- name: spillway-e2e
  context:
    cluster: spillway-e2e
    user: $3
current-context: spillway-e2e
EOF
  chmod 600 "$tmp"
  if [[ -f "$file" ]] && cmp -s "$tmp" "$file"; then rm -f "$tmp"; else mv "$tmp" "$file"; fi
}

# ---------------------------------------------------------------- processes

# alive NAME: the recorded pid runs our binary (a stale pid reused by another program is not ours).
alive() {
  local pidf="$run/$1.pid" pid
  [[ -f "$pidf" ]] || return 1
  pid="$(cat "$pidf")"
  [[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null || return 1
  tr '\0' '\n' <"/proc/$pid/cmdline" 2>/dev/null | head -n1 | grep -qxF "$bin/$1"
}

# fail NAME MESSAGE: says where to look.
fail() {
  log "$1: $2"
  if [[ -f "$run/$1.log" ]]; then
    log "last lines of $run/$1.log:"
    tail -n 15 "$run/$1.log" >&2
  fi
  exit 1
}

# spawn NAME ARGS...: starts $bin/NAME in the background with its pid file and log.
spawn() {
  local name="$1"; shift
  [[ -x "$bin/$name" ]] || die "$bin/$name missing: run e2e/scripts/k8s.sh install"
  # One log per run; the previous run's stays beside it as NAME.log.1.
  [[ -f "$run/$name.log" ]] && mv -f "$run/$name.log" "$run/$name.log.1"
  nohup "$bin/$name" "$@" >"$run/$name.log" 2>&1 </dev/null &
  echo $! >"$run/$name.pid"
}

# port_free NAME PORT: nothing listens there yet (else a stale or foreign server would answer).
port_free() {
  if (exec 3<>"/dev/tcp/127.0.0.1/$2") 2>/dev/null; then
    die "$1: 127.0.0.1:$2 is already in use (another cluster? set SPILLWAY_K8S_*PORT and SPILLWAY_RUN)"
  fi
}

# up NAME: the process spawn just started still runs. (Not alive: until nohup has exec'd
# the binary, its command line is not yet the binary's.)
up() { kill -0 "$(cat "$run/$1.pid")" 2>/dev/null; }

# wait_for NAME SECONDS URL PATTERN CURL-ARGS...: until the body of URL matches PATTERN
# (an extended regex) while NAME stays up.
wait_for() {
  local name="$1" secs="$2" url="$3" pattern="$4" deadline body; shift 4
  deadline=$((SECONDS + secs))
  while :; do
    up "$name" || fail "$name" "exited during start-up"
    body="$(curl -fsS --max-time 5 "$@" "$url" 2>/dev/null)" || body=""
    [[ "$body" =~ $pattern ]] && return
    (( SECONDS > deadline )) && fail "$name" "$url did not answer within ${secs}s"
    sleep 0.5
  done
}

admin_curl=(--cacert "$pki/ca.crt" --cert "$pki/admin.crt" --key "$pki/admin.key")

start_etcd() {
  if alive etcd; then log "etcd already running (pid $(cat "$run/etcd.pid"))"; return; fi
  local peer="https://127.0.0.1:$etcd_peer_port" client="https://127.0.0.1:$etcd_port"
  port_free etcd "$etcd_port"
  port_free etcd "$etcd_peer_port"
  spawn etcd --name spillway-e2e --data-dir "$run/etcd-data" \
    --listen-client-urls "$client" --advertise-client-urls "$client" \
    --listen-peer-urls "$peer" --initial-advertise-peer-urls "$peer" \
    --initial-cluster "spillway-e2e=$peer" --initial-cluster-state new \
    --initial-cluster-token spillway-e2e \
    --cert-file "$pki/etcd.crt" --key-file "$pki/etcd.key" \
    --trusted-ca-file "$pki/ca.crt" --client-cert-auth \
    --peer-cert-file "$pki/etcd.crt" --peer-key-file "$pki/etcd.key" \
    --peer-trusted-ca-file "$pki/ca.crt" --peer-client-cert-auth \
    --snapshot-count 10000 --log-level warn
  wait_for etcd 60 "$client/health" '"health":"true"' --cacert "$pki/ca.crt" \
    --cert "$pki/apiserver-etcd-client.crt" --key "$pki/apiserver-etcd-client.key"
  log "etcd $etcd_version on $client (pid $(cat "$run/etcd.pid"))"
}

# The "kubernetes" Service gets its ClusterIP, but no Endpoints: the only address is
# loopback, which Endpoints refuse (the reconciler would fail every 10s).
start_apiserver() {
  if alive kube-apiserver; then log "kube-apiserver already running (pid $(cat "$run/kube-apiserver.pid"))"; return; fi
  port_free kube-apiserver "$api_port"
  spawn kube-apiserver \
    --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$api_port" \
    --tls-cert-file "$pki/apiserver.crt" --tls-private-key-file "$pki/apiserver.key" \
    --client-ca-file "$pki/ca.crt" \
    --requestheader-client-ca-file "$pki/front-proxy-ca.crt" --requestheader-allowed-names front-proxy-client \
    --requestheader-username-headers X-Remote-User --requestheader-group-headers X-Remote-Group \
    --requestheader-extra-headers-prefix X-Remote-Extra- \
    --proxy-client-cert-file "$pki/front-proxy-client.crt" --proxy-client-key-file "$pki/front-proxy-client.key" \
    --etcd-servers "https://127.0.0.1:$etcd_port" --etcd-cafile "$pki/ca.crt" \
    --etcd-certfile "$pki/apiserver-etcd-client.crt" --etcd-keyfile "$pki/apiserver-etcd-client.key" \
    --authorization-mode Node,RBAC \
    --service-account-issuer https://kubernetes.default.svc.cluster.local \
    --service-account-key-file "$pki/sa.pub" --service-account-signing-key-file "$pki/sa.key" \
    --service-cluster-ip-range "$service_cidr" \
    --endpoint-reconciler-type none \
    --enable-admission-plugins NamespaceLifecycle,LimitRanger,ServiceAccount,DefaultTolerationSeconds,NodeRestriction,PodSecurity,ResourceQuota,MutatingAdmissionWebhook,ValidatingAdmissionPolicy,ValidatingAdmissionWebhook \
    --allow-privileged=true --profiling=false
  wait_for kube-apiserver 120 "$api_url/readyz" '^ok$' "${admin_curl[@]}"
  log "kube-apiserver $k8s_version on $api_url (pid $(cat "$run/kube-apiserver.pid"))"
}

start_controller_manager() {
  if alive kube-controller-manager; then
    log "kube-controller-manager already running (pid $(cat "$run/kube-controller-manager.pid"))"; return
  fi
  port_free kube-controller-manager "$kcm_port"
  spawn kube-controller-manager \
    --kubeconfig "$kcm_kubeconfig" \
    --authentication-kubeconfig "$kcm_kubeconfig" --authorization-kubeconfig "$kcm_kubeconfig" \
    --bind-address 127.0.0.1 --secure-port "$kcm_port" \
    --tls-cert-file "$pki/controller-manager-serving.crt" --tls-private-key-file "$pki/controller-manager-serving.key" \
    --service-account-private-key-file "$pki/sa.key" --root-ca-file "$pki/ca.crt" \
    --cluster-signing-cert-file "$pki/ca.crt" --cluster-signing-key-file "$pki/ca.key" \
    --use-service-account-credentials=true --controllers '*' \
    --service-cluster-ip-range "$service_cidr" --cluster-name spillway-e2e \
    --leader-elect=false --profiling=false
  wait_for kube-controller-manager 90 "https://127.0.0.1:$kcm_port/healthz" '^ok$' --cacert "$pki/ca.crt"
  # The service-account controller is up once the default namespace has its account.
  local deadline=$((SECONDS + 60))
  until curl -fsS --max-time 5 "${admin_curl[@]}" -o /dev/null \
      "$api_url/api/v1/namespaces/default/serviceaccounts/default" 2>/dev/null; do
    up kube-controller-manager || fail kube-controller-manager "exited during start-up"
    (( SECONDS > deadline )) && fail kube-controller-manager "no default ServiceAccount within 60s"
    sleep 0.5
  done
  log "kube-controller-manager on 127.0.0.1:$kcm_port (pid $(cat "$run/kube-controller-manager.pid"))"
}

print_env() {
  cat <<ENV
export SPILLWAY_E2E_KUBECONFIG=$admin_kubeconfig
export SPILLWAY_K8S_SERVER=$api_url
ENV
}

start() {
  command -v openssl >/dev/null || die "openssl is missing"
  command -v curl >/dev/null || die "curl is missing"
  mkdir -p "$run"
  make_pki
  start_etcd
  start_apiserver
  start_controller_manager
  print_env
}

# ---------------------------------------------------------------- stop

stop() {
  local name pid
  for name in kube-controller-manager kube-apiserver etcd; do
    [[ -f "$run/$name.pid" ]] || continue
    pid="$(cat "$run/$name.pid")"
    if alive "$name"; then
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      if kill -0 "$pid" 2>/dev/null; then
        log "$name (pid $pid) ignored SIGTERM for 10s: SIGKILL"
        kill -9 "$pid" 2>/dev/null || true
      fi
      log "stopped $name (pid $pid)"
    fi
    rm -f "$run/$name.pid"
  done
}

case "${1:-}" in
  install) install ;;
  start) start ;;
  stop) stop ;;
  env) print_env ;;
  *) echo "usage: $0 install|start|stop|env" >&2; exit 2 ;;
esac
