#!/usr/bin/env bash
# The Apache Kafka test broker: one KRaft node (broker + controller) on loopback.
#   kafka.sh install  resolve kafka_2.13:$SPILLWAY_KAFKA_VERSION and its runtime jars from
#                     Maven Central into $SPILLWAY_TOOLS/kafka-<version>/libs (idempotent)
#   kafka.sh start    format a fresh log dir and start the node, unless it already runs;
#                     returns once the broker answers a metadata request
#   kafka.sh stop     stop exactly the recorded pid (TERM, bounded wait, KILL)
#   kafka.sh env      print the environment the tests read
# The log dir is recreated at every start: the tests use unique topics and groups, so no
# state is worth keeping, and a fresh dir never mixes cluster ids or grows without bound.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=env.sh
source "$here/env.sh"
log() { printf '[kafka] %s\n' "$*" >&2; }

version="$SPILLWAY_KAFKA_VERSION"
controller_port="${SPILLWAY_KAFKA_CONTROLLER_PORT:-$((SPILLWAY_KAFKA_PORT + 1))}"
home="$SPILLWAY_TOOLS/kafka-$version"
run="$SPILLWAY_RUN/kafka"
pidf="$SPILLWAY_RUN/kafka.pid"
logf="$SPILLWAY_RUN/kafka.log"

# The recorded pid is ours only while it still runs kafka.Kafka (a stale pid file whose
# pid was reused by another process is neither "running" nor stopped).
ours() { kill -0 "$1" 2>/dev/null && tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null | grep -q 'kafka\.Kafka'; }
alive() { [[ -f "$pidf" ]] && ours "$(cat "$pidf")"; }

# One JVM invocation over the installed jars; tools log to stderr at WARN only.
kjava() {
  java -Xmx256m -cp "$home/libs/*" -Dlog4j2.configurationFile="$here/../kafka/log4j2.properties" \
    -Dspillway.kafka.log.level=warn "$@"
}

install_kafka() {
  local stamp="$home/.installed-$version"
  if [[ -f "$stamp" ]]; then return; fi
  command -v java >/dev/null && command -v mvn >/dev/null \
    || { log "java and mvn are needed to install Kafka"; exit 1; }
  log "resolving org.apache.kafka:kafka_2.13:$version from Maven Central"
  local tmp="$home.tmp"
  rm -rf "$tmp"
  mkdir -p "$tmp/libs"
  mvn -q -B -Dstyle.color=never -f "$here/../kafka/pom.xml" -Dmaven.repo.local="$SPILLWAY_CACHE/m2" \
    -Dkafka.version="$version" -DincludeScope=runtime -DoutputDirectory="$tmp/libs" \
    dependency:copy-dependencies >"$tmp/mvn.log" 2>&1 \
    || { log "mvn dependency:copy-dependencies failed:"; cat "$tmp/mvn.log" >&2; exit 1; }
  rm -rf "$home"
  mv "$tmp" "$home"
  touch "$stamp"
  log "installed $(find "$home/libs" -name '*.jar' | wc -l) jars in $home/libs"
}

write_config() {
  cat >"$run/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
listeners=PLAINTEXT://127.0.0.1:${SPILLWAY_KAFKA_PORT},CONTROLLER://127.0.0.1:${controller_port}
advertised.listeners=PLAINTEXT://127.0.0.1:${SPILLWAY_KAFKA_PORT}
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
controller.quorum.bootstrap.servers=127.0.0.1:${controller_port}
log.dirs=${run}/data
# One node: every internal topic has one replica.
num.partitions=1
default.replication.factor=1
auto.create.topics.enable=true
offsets.topic.replication.factor=1
offsets.topic.num.partitions=10
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=4
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
# Groups: no initial rebalance delay, short session timeouts allowed (kill tests).
group.initial.rebalance.delay.ms=0
group.min.session.timeout.ms=1000
# Retention and compaction act within seconds when a topic asks for it
# (retention.ms, segment.ms, min.cleanable.dirty.ratio set per topic).
log.retention.check.interval.ms=1000
log.segment.delete.delay.ms=0
log.cleaner.enable=true
log.cleaner.threads=1
log.cleaner.backoff.ms=500
log.cleaner.dedupe.buffer.size=33554432
log.roll.jitter.ms=0
PROPS
}

start_kafka() {
  if alive; then log "kafka already running (pid $(cat "$pidf"))"; return; fi
  [[ -f "$home/.installed-$version" ]] || { log "kafka $version missing: run e2e/scripts/kafka.sh install"; exit 1; }
  rm -rf "$run"
  mkdir -p "$run/data" "$run/logs"
  write_config
  cp "$here/../kafka/log4j2.properties" "$run/log4j2.properties"
  local cluster_id
  cluster_id="$(kjava kafka.tools.StorageTool random-uuid)"
  kjava kafka.tools.StorageTool format --standalone -t "$cluster_id" \
    -c "$run/server.properties" >"$run/format.log" 2>&1 \
    || { log "formatting the log dir failed:"; cat "$run/format.log" >&2; exit 1; }
  nohup java -Xms256m -Xmx1g -XX:+UseG1GC -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$run/log4j2.properties" -Dkafka.logs.dir="$run/logs" \
    -cp "$home/libs/*" kafka.Kafka "$run/server.properties" >"$logf" 2>&1 &
  echo $! >"$pidf"
  wait_ready 90
  log "kafka $version on 127.0.0.1:${SPILLWAY_KAFKA_PORT} (pid $(cat "$pidf"), log $logf)"
}

# Ready = the port is open and the broker answers a metadata request (a topic listing).
wait_ready() { # seconds
  local deadline=$((SECONDS + $1))
  until (exec 3<>"/dev/tcp/127.0.0.1/$SPILLWAY_KAFKA_PORT") 2>/dev/null; do
    alive || { log "kafka exited during startup:"; tail -n 30 "$logf" >&2; exit 1; }
    (( SECONDS < deadline )) || { log "kafka did not open port $SPILLWAY_KAFKA_PORT within $1s"; exit 1; }
    sleep 0.2
  done
  until kjava org.apache.kafka.tools.TopicCommand --bootstrap-server "$SPILLWAY_KAFKA_BOOTSTRAP" \
      --list --command-config /dev/null >/dev/null 2>"$run/ready.err"; do
    alive || { log "kafka exited during startup:"; tail -n 30 "$logf" >&2; exit 1; }
    (( SECONDS < deadline )) || { log "kafka did not answer metadata within $1s:"; cat "$run/ready.err" >&2; exit 1; }
    sleep 0.5
  done
}

stop_kafka() {
  [[ -f "$pidf" ]] || return 0
  local pid; pid="$(cat "$pidf")"
  if ours "$pid"; then
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then kill -9 "$pid" 2>/dev/null || true; fi
    log "stopped kafka (pid $pid)"
  fi
  rm -f "$pidf"
}

case "${1:-}" in
  install) install_kafka ;;
  start) start_kafka ;;
  stop) stop_kafka ;;
  env)
    cat <<ENV
export SPILLWAY_KAFKA_BOOTSTRAP=${SPILLWAY_KAFKA_BOOTSTRAP}
export SPILLWAY_KAFKA_HOME=${home}
ENV
    ;;
  *) echo "usage: $0 install|start|stop|env" >&2; exit 2 ;;
esac
