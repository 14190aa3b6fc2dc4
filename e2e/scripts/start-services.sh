#!/usr/bin/env bash
# Starts the test services on loopback, each once: the Apache Kafka broker (kafka.sh; a
# single KRaft node) and moto's S3 server, then creates the test bucket; then the
# Kubernetes control plane (k8s.sh). Pid files live in $SPILLWAY_RUN; stop-services.sh
# kills exactly those pids. Prints the environment to use.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=env.sh
source "$here/env.sh"
log() { printf '[start-services] %s\n' "$*" >&2; }

alive() { [[ -f "$1" ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

wait_port() { # host port seconds name
  local deadline=$((SECONDS + $3))
  until (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; do
    if (( SECONDS > deadline )); then log "$4 did not open $1:$2 within $3s"; return 1; fi
    sleep 0.2
  done
}

start_moto() {
  local pidf="$SPILLWAY_RUN/moto.pid"
  if alive "$pidf"; then log "moto already running (pid $(cat "$pidf"))"; return; fi
  [[ -x "$SPILLWAY_TOOLS/venv/bin/moto_server" ]] || { log "moto missing: run e2e/scripts/install-services.sh"; exit 1; }
  nohup "$SPILLWAY_TOOLS/venv/bin/moto_server" -H 127.0.0.1 -p "$SPILLWAY_S3_PORT" \
    >"$SPILLWAY_RUN/moto.log" 2>&1 &
  echo $! >"$pidf"
  wait_port 127.0.0.1 "$SPILLWAY_S3_PORT" 60 moto
  AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_DEFAULT_REGION=us-east-1 \
    "$SPILLWAY_TOOLS/venv/bin/python" - "$SPILLWAY_S3_ENDPOINT" "${SPILLWAY_S3_BUCKET:-spillway-test}" <<'PY'
import sys, boto3
s3 = boto3.client("s3", endpoint_url=sys.argv[1])
names = [b["Name"] for b in s3.list_buckets().get("Buckets", [])]
if sys.argv[2] not in names:
    s3.create_bucket(Bucket=sys.argv[2])
PY
  log "moto on ${SPILLWAY_S3_ENDPOINT} (pid $(cat "$pidf")), bucket ${SPILLWAY_S3_BUCKET:-spillway-test}"
}

what="${1:-all}"
case "$what" in
  all) bash "$here/kafka.sh" start; start_moto; bash "$here/k8s.sh" start >/dev/null ;;
  kafka) bash "$here/kafka.sh" start ;;
  k8s) bash "$here/k8s.sh" start >/dev/null ;;
  moto) start_moto ;;
  *) echo "usage: $0 [all|kafka|k8s|moto]" >&2; exit 2 ;;
esac
if [[ "$what" == all || "$what" == k8s ]]; then bash "$here/k8s.sh" env; fi
cat <<ENV
export SPILLWAY_KAFKA_BOOTSTRAP=${SPILLWAY_KAFKA_BOOTSTRAP}
export SPILLWAY_S3_ENDPOINT=${SPILLWAY_S3_ENDPOINT}
export SPILLWAY_S3_BUCKET=${SPILLWAY_S3_BUCKET:-spillway-test}
ENV
