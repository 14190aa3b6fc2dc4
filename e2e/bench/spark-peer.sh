#!/usr/bin/env bash
# Spillway against the seeds' own Spark Structured Streaming job, on the same topic:
# N HsuTestEvent records (raw Avro) in a topic of P partitions, drained once by
#   - spillway run -f <manifest>  (Delta sink, trigger: {availableNow: true}), then by
#   - PySpark, local[2]: readStream kafka (startingOffsets earliest) -> from_avro -> writeStream
#     delta, trigger(availableNow=True) (e2e/bench/spark_peer_job.py),
# each into its own local Delta table, timed as a whole process (wall, CPU = user + sys of
# the process and the children it waited for, peak RSS of the largest of them). Both tables
# are then read back (Python deltalake, else Spark) and must hold N rows with the same sums.
# Prints a table and the ratio Spark time / Spillway time.
#
#   e2e/bench/spark-peer.sh [--records N] [--partitions P] [--max-per-batch M] [--install-only]
#
# Both sides close a micro-batch after M records (Spillway's maxRecordsPerBatch, Spark's
# maxOffsetsPerTrigger; default 500000, Spillway's default; 0 = one batch for the whole topic:
# no Spark limit, and Spillway's maxRecordsPerBatch set to N). Environment:
#   SPILLWAY_BIN                 the spillway binary (default: the release build under
#                                $SPILLWAY_CACHE/target-release; never built here)
#   SPARK_PEER_PYSPARK_VERSION   PySpark from PyPI (default 4.2.0)
#   SPARK_PEER_DELTA_VERSION     io.delta:delta-spark_<spark major.minor>_<scala> (default 4.4.0)
#   SPARK_PEER_SCALA_VERSION     Scala binary version of the jars (default 2.13)
#   SPARK_PEER_KAFKA_PORT        its own broker's port (default 49092; the controller's is +1)
#   SPARK_PEER_RUN               its own run dir (default $SPILLWAY_CACHE/run-spark)
#   SPARK_PEER_TIMEOUT           seconds each step may take before it is stopped (default 900)
#   SPARK_PEER_PRODUCE_PROPS     librdkafka producer settings for spillway produce
#                                (default "linger.ms=5 batch.num.messages=10000")
#   SPARK_PEER_SPARK_CONF        extra Spark settings, "k=v k=v" (default none: Spark's own)
# Everything it installs goes under $SPILLWAY_CACHE/tools (versioned, skipped when present):
# Kafka through e2e/scripts/kafka.sh, and spark-peer-<pyspark>-<delta>-<scala>/ with the venv
# and the jars resolved by mvn from e2e/bench/spark/pom.xml. Its broker listens on 127.0.0.1
# only, in its own run dir, and is stopped (by its recorded pid) on exit.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
scripts="$here/../scripts"
repo="$(cd "$here/../.." && pwd)"

records=2000000
partitions=4
max_per_batch=500000
install_only=0
usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//'; }
while (($#)); do
  case "$1" in
    --records) records="$2"; shift 2 ;;
    --partitions) partitions="$2"; shift 2 ;;
    --max-per-batch) max_per_batch="$2"; shift 2 ;;
    --install-only) install_only=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
done
for n in "$records" "$partitions" "$max_per_batch"; do
  [[ "$n" =~ ^[0-9]+$ ]] || { echo "not a number: $n" >&2; exit 2; }
done
((records > 0 && partitions > 0)) || { echo "--records and --partitions must be 1 or more" >&2; exit 2; }

# Its own broker, apart from the test services' (run dir, broker and controller ports).
export SPILLWAY_CACHE="${SPILLWAY_CACHE:-$HOME/.cache/spillway}"
export SPILLWAY_RUN="${SPARK_PEER_RUN:-$SPILLWAY_CACHE/run-spark}"
export SPILLWAY_KAFKA_PORT="${SPARK_PEER_KAFKA_PORT:-49092}"
export SPILLWAY_KAFKA_CONTROLLER_PORT="$((SPILLWAY_KAFKA_PORT + 1))"
# shellcheck source=../scripts/env.sh
source "$scripts/env.sh"
log() { printf '[spark-peer] %s\n' "$*" >&2; }

pyspark_version="${SPARK_PEER_PYSPARK_VERSION:-4.2.0}"
delta_version="${SPARK_PEER_DELTA_VERSION:-4.4.0}"
scala_version="${SPARK_PEER_SCALA_VERSION:-2.13}"
spark_line="${pyspark_version%.*}"
peer="$SPILLWAY_TOOLS/spark-peer-$pyspark_version-$delta_version-$scala_version"
bin="${SPILLWAY_BIN:-$SPILLWAY_CACHE/target-release/release/spillway}"
timeout_s="${SPARK_PEER_TIMEOUT:-900}"
read -r -a produce_props <<<"${SPARK_PEER_PRODUCE_PROPS:-linger.ms=5 batch.num.messages=10000}"
read -r -a spark_conf <<<"${SPARK_PEER_SPARK_CONF:-}"

# --- install ---------------------------------------------------------------------------

# The venv with PySpark, and the jars it lacks for the job: spark-sql-kafka-0-10, spark-avro
# and delta-spark with their runtime dependencies, less any artifact PySpark already ships
# (its own version is kept, as Spark's --packages would not replace it either).
install_peer() {
  local stamp="$peer/.installed"
  if [[ -f "$stamp" ]]; then return; fi
  local tool
  for tool in java mvn python3; do
    command -v "$tool" >/dev/null || { log "$tool is needed to install the Spark peer"; exit 1; }
  done
  rm -rf "$peer"
  mkdir -p "$peer/jars"
  log "installing pyspark==$pyspark_version from PyPI into $peer/venv"
  python3 -m venv "$peer/venv"
  "$peer/venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    "pyspark==$pyspark_version" >"$peer/pip.log" 2>&1 \
    || { log "pip install failed:"; cat "$peer/pip.log" >&2; exit 1; }
  local spark_jars jackson
  spark_jars="$("$peer/venv/bin/python" -c 'import os, pyspark; print(os.path.join(os.path.dirname(pyspark.__file__), "jars"))')"
  jackson="$(find "$spark_jars" -name 'jackson-databind-*.jar' -printf '%f\n' | sed -E 's/^jackson-databind-(.*)\.jar$/\1/' | head -n 1)"
  [[ -n "$jackson" ]] || { log "no jackson-databind jar in $spark_jars"; exit 1; }
  log "resolving spark-sql-kafka-0-10_$scala_version, spark-avro_$scala_version:$pyspark_version and delta-spark_${spark_line}_$scala_version:$delta_version from Maven Central"
  mvn -q -B -Dstyle.color=never -f "$here/spark/pom.xml" -Dmaven.repo.local="$SPILLWAY_CACHE/m2" \
    -Dspark.version="$pyspark_version" -Dscala.binary.version="$scala_version" \
    -Ddelta.version="$delta_version" -Ddelta.spark.line="$spark_line" -Djackson.version="$jackson" \
    -DincludeScope=runtime -DoutputDirectory="$peer/resolved" \
    dependency:copy-dependencies >"$peer/mvn.log" 2>&1 \
    || { log "mvn dependency:copy-dependencies failed:"; cat "$peer/mvn.log" >&2; exit 1; }
  "$peer/venv/bin/python" - "$peer/resolved" "$peer/jars" "$spark_jars" <<'PY'
import os, re, shutil, sys
def artifact(jar):  # name-1.2.3.jar -> name (the version is the last "-digit..." part without "_")
    m = re.match(r"^(.*?)-(\d[^_]*)\.jar$", jar)
    return m.group(1) if m else jar
shipped = {artifact(j) for j in os.listdir(sys.argv[3])}
for j in sorted(os.listdir(sys.argv[1])):
    if j.endswith(".jar") and artifact(j) not in shipped:
        shutil.copy(os.path.join(sys.argv[1], j), sys.argv[2])
PY
  rm -rf "$peer/resolved"
  touch "$stamp"
  log "installed: $(find "$peer/jars" -name '*.jar' | wc -l) jars in $peer/jars"
}

bash "$scripts/kafka.sh" install
install_peer
if ((install_only)); then log "ok: installed"; exit 0; fi

if [[ ! -x "$bin" ]]; then
  cat >&2 <<MSG
[spark-peer] no spillway binary at $bin
[spark-peer] build it (from the repository root), or point SPILLWAY_BIN at one:
    CARGO_TARGET_DIR=\$SPILLWAY_CACHE/target-release cargo build --release -p spillway-worker --bin spillway
MSG
  exit 2
fi

# --- run -------------------------------------------------------------------------------

child=""
cleanup() {
  local rc=$?
  if ((rc == 130 || rc == 143)); then log "interrupted: stopping what it started"; fi
  if [[ -n "$child" ]] && kill -0 "$child" 2>/dev/null; then
    kill -TERM "$child" 2>/dev/null || true # the measuring wrapper passes it on and waits
    for _ in $(seq 1 300); do kill -0 "$child" 2>/dev/null || break; sleep 0.1; done
  fi
  bash "$scripts/kafka.sh" stop || true
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Runs a command, bounded by $timeout_s, and writes "wall cpu peak_rss_mib rc" to $1:
# CPU and peak RSS come from getrusage(RUSAGE_CHILDREN), which covers every descendant that
# was waited for (the Spark job waits for its JVM). A TERM is passed on to the command.
measure_py='
import resource, signal, subprocess, sys, time
limit, out, cmd = float(sys.argv[1]), sys.argv[2], sys.argv[3:]
t0 = time.monotonic()
p = subprocess.Popen(cmd)
signal.signal(signal.SIGTERM, lambda *_: p.terminate())
signal.signal(signal.SIGINT, lambda *_: p.terminate())
try:
    rc = p.wait(timeout=limit)
except subprocess.TimeoutExpired:
    print(f"timed out after {limit:.0f}s: {cmd[0]}", file=sys.stderr, flush=True)
    p.terminate()
    try:
        p.wait(timeout=30)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
    rc = 124
wall = time.monotonic() - t0
ru = resource.getrusage(resource.RUSAGE_CHILDREN)
with open(out, "w") as f:
    f.write(f"{wall:.3f} {ru.ru_utime + ru.ru_stime:.3f} {ru.ru_maxrss / 1024:.1f} {rc}\n")
sys.exit(rc if rc >= 0 else 128 - rc)
'
measure() { # usage-file log-file command...
  local usage_file="$1" log_file="$2"; shift 2
  python3 -c "$measure_py" "$timeout_s" "$usage_file" "$@" >"$log_file" 2>&1 &
  child=$!
  local rc=0
  wait "$child" || rc=$?
  child=""
  return "$rc"
}

bench="$SPILLWAY_RUN/bench"
rm -rf "$bench"
mkdir -p "$bench"
cd "$bench" # Spark's scratch files (spark-warehouse, ...) land here, not in the clone
topic="hsutest-peer"
schema_file="$repo/config/schemas/hsutest.avsc"
schema="$(python3 -c 'import json,sys; print(json.dumps(json.load(open(sys.argv[1])), separators=(",", ":")))' "$schema_file")"

log "load average before: $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) cores"
bash "$scripts/kafka.sh" start

xargs_props=()
for kv in "${produce_props[@]}"; do xargs_props+=(-X "$kv"); done
log "producing $records HsuTestEvent records into $topic ($partitions partitions) with ${produce_props[*]}"
if ! measure "$bench/produce.usage" "$bench/produce.log" \
    "$bin" produce --bootstrap "$SPILLWAY_KAFKA_BOOTSTRAP" --topic "$topic" \
    --count "$records" --partitions "$partitions" "${xargs_props[@]}"; then
  log "spillway produce failed:"; tail -n 20 "$bench/produce.log" >&2; exit 1
fi
tr '\r' '\n' <"$bench/produce.log" | grep -a '^produced .* in ' | tail -n 1 >&2 || true

spillway_batch="$max_per_batch"
((spillway_batch > 0)) || spillway_batch="$records"
cat >"$bench/spillway.yaml" <<YAML
apiVersion: spillway.dev/v1alpha1
kind: StreamingPipeline
metadata: {name: spark-peer}
spec:
  source:
    kafka:
      bootstrapServers: "$SPILLWAY_KAFKA_BOOTSTRAP"
      topics: [$topic]
      startingOffsets: earliest
      maxRecordsPerBatch: $spillway_batch
  format:
    avro:
      encoding: raw
      writerSchema:
        inline: '$schema'
  sink:
    delta: {uri: "$bench/spillway/table"}
  checkpoint: {uri: "$bench/spillway/checkpoint"}
  trigger: {availableNow: true}
YAML

log "spillway run (availableNow) -> $bench/spillway/table"
if ! measure "$bench/spillway.usage" "$bench/spillway.log" \
    "$bin" run --http 127.0.0.1:0 -f "$bench/spillway.yaml"; then
  log "spillway run failed:"; tail -n 30 "$bench/spillway.log" >&2; exit 1
fi

log "spark (pyspark $pyspark_version, local[2], availableNow) -> $bench/spark/table"
jars="$(find "$peer/jars" -name '*.jar' | sort | paste -sd, -)"
spark_args=(--master 'local[2]' --bootstrap "$SPILLWAY_KAFKA_BOOTSTRAP" --topic "$topic"
  --schema-file "$schema_file" --table "$bench/spark/table" --checkpoint "$bench/spark/checkpoint"
  --max-offsets-per-trigger "$max_per_batch")
for kv in "${spark_conf[@]}"; do spark_args+=(--conf "$kv"); done
export SPARK_PEER_JARS="$jars" SPARK_LOCAL_IP=127.0.0.1 PYSPARK_PYTHON="$peer/venv/bin/python"
if ! measure "$bench/spark.usage" "$bench/spark.log" \
    "$peer/venv/bin/python" "$here/spark_peer_job.py" stream "${spark_args[@]}"; then
  log "the spark job failed:"; grep -a -v '^\s*at ' "$bench/spark.log" | tail -n 40 >&2; exit 1
fi

# --- verify and report -----------------------------------------------------------------

log "reading both tables back"
counts="$bench/counts.json"
verify_deltalake() {
  [[ -x "$SPILLWAY_TOOLS/venv/bin/python" ]] || return 1
  "$SPILLWAY_TOOLS/venv/bin/python" - "$bench/spillway/table" "$bench/spark/table" >"$counts" 2>"$bench/verify.log" <<'PY'
import json, sys
import pyarrow.compute as pc
from deltalake import DeltaTable
out = {}
for t in sys.argv[1:]:
    tbl = DeltaTable(t).to_pyarrow_table(columns=["ts", "amount"])
    out[t] = {"rows": tbl.num_rows, "sum_ts": pc.sum(tbl["ts"]).as_py(), "sum_amount": pc.sum(tbl["amount"]).as_py()}
print(json.dumps({"reader": "deltalake (delta-rs)", "tables": out}))
PY
}
verify_spark() {
  "$peer/venv/bin/python" "$here/spark_peer_job.py" count --master 'local[2]' \
    --table "$bench/spillway/table" --table "$bench/spark/table" >"$bench/verify-spark.log" 2>&1 || return 1
  grep -a '^SPARK_PEER_COUNT ' "$bench/verify-spark.log" | sed 's/^SPARK_PEER_COUNT //' \
    | python3 -c 'import json,sys; print(json.dumps({"reader": "Spark (Delta)", "tables": json.load(sys.stdin)}))' >"$counts"
}
if ! verify_deltalake; then
  log "deltalake could not read the tables ($(tail -n 1 "$bench/verify.log" 2>/dev/null || echo 'no venv')); reading them with Spark"
  verify_spark || { log "reading the tables failed:"; tail -n 30 "$bench/verify-spark.log" >&2; exit 1; }
fi

spark_result="$(grep -a '^SPARK_PEER_RESULT ' "$bench/spark.log" | sed 's/^SPARK_PEER_RESULT //' || true)"
[[ -n "$spark_result" ]] || spark_result='{}'
grep -a '^batch ' "$bench/spillway.log" >"$bench/spillway-batches.txt" || true
bin_kind="$(case "$bin" in */debug/*) echo debug ;; */release/*) echo release ;; *) echo "?" ;; esac)"

SP_BIN="$bin" SP_BIN_KIND="$bin_kind" SP_PYSPARK="$pyspark_version" SP_SCALA="$scala_version" \
SP_DELTA="$delta_version" SP_SPARK_LINE="$spark_line" SP_PRODUCE="${produce_props[*]}" \
SP_SPARK_CONF="${spark_conf[*]}" \
python3 - "$records" "$partitions" "$max_per_batch" "$bench" "$counts" "$spark_result" <<'PY'
import json, os, sys
e = os.environ
records, partitions, max_per_batch = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
bench, counts, spark = sys.argv[4], json.load(open(sys.argv[5])), json.loads(sys.argv[6])
def usage(name):
    wall, cpu, rss, rc = open(f"{bench}/{name}.usage").read().split()
    return float(wall), float(cpu), float(rss)
sw, sp = usage("spillway"), usage("spark")
print()
print(f"spark-peer: {records:,} HsuTestEvent records (raw Avro), {partitions} partitions, "
      f"batches of {max_per_batch or 'unlimited'} records, availableNow, local Delta tables")
sv, sc = e["SP_PYSPARK"], e["SP_SCALA"]
print(f"  spillway: {e['SP_BIN']} ({e['SP_BIN_KIND']} build)")
print(f"  spark:    pyspark {sv} (Scala {sc}), spark-sql-kafka-0-10_{sc} {sv}, spark-avro_{sc} {sv}, "
      f"delta-spark_{e['SP_SPARK_LINE']}_{sc} {e['SP_DELTA']}, local[2]"
      + (f", {e['SP_SPARK_CONF']}" if e["SP_SPARK_CONF"] else ""))
print(f"  produced with: spillway produce " + " ".join("-X " + kv for kv in e["SP_PRODUCE"].split()))
print(f"  load average now: {open('/proc/loadavg').read().split()[:3]}")
print()
print(f"{'tool':<10} {'seconds':>9} {'records/s':>11} {'CPU s':>8} {'peak RSS MiB':>13}")
for name, (wall, cpu, rss) in (("spillway", sw), ("spark", sp)):
    print(f"{name:<10} {wall:>9.2f} {records / wall:>11,.0f} {cpu:>8.2f} {rss:>13.0f}")
print()
print(f"ratio spark / spillway: {sp[0] / sw[0]:.2f}x wall time, {sp[1] / sw[1]:.2f}x CPU time")
if spark.get("querySeconds"):
    q = spark["querySeconds"]
    print(f"  spark's query alone (after {spark['sessionSeconds']:.1f}s of JVM and session start): "
          f"{q:.2f}s, {records / q:,.0f} records/s, {q / sw[0]:.2f}x spillway's whole run")
print()
print("spillway batches:")
for line in open(f"{bench}/spillway-batches.txt"):
    print("  " + line.rstrip())
print("spark batches (triggerExecution):")
for b in spark.get("batches", []):
    ms = b["triggerExecutionMs"] or 0
    print(f"  batch {b['batchId']:>4}: {b['numInputRows']:>8} rows in {ms:>5} ms ({b['numInputRows'] / max(ms, 1) * 1000:>10.0f} rows/s)")
print()
ok = True
tables = list(counts["tables"].items())
for (path, c), name in zip(tables, ("spillway", "spark")):
    good = c["rows"] == records
    ok &= good
    print(f"{name} table: {c['rows']:,} rows, sum(ts) {c['sum_ts']}, sum(amount) {c['sum_amount']:.4f} "
          f"({counts['reader']}){'' if good else f'  MISMATCH: expected {records:,}'}")
same = tables[0][1]["sum_ts"] == tables[1][1]["sum_ts"] and abs(tables[0][1]["sum_amount"] - tables[1][1]["sum_amount"]) < 1e-3 * max(1.0, abs(tables[0][1]["sum_amount"]))
ok &= same
print("both tables hold the same records" if same else "MISMATCH: the tables differ")
sys.exit(0 if ok else 1)
PY
