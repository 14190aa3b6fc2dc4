"""The Spark side of e2e/bench/spark-peer.sh: the Structured Streaming job Spillway replaces.

  spark_peer_job.py stream --bootstrap B --topic T --schema-file S --table D --checkpoint C
      readStream from Kafka (startingOffsets earliest), from_avro on the value with the
      writer schema, writeStream format delta, trigger(availableNow=True), awaitTermination.
      Prints one line `SPARK_PEER_RESULT {json}` with the query's own time and its batches.
  spark_peer_job.py count --table D [--table D2 ...]
      Prints `SPARK_PEER_COUNT {json}`: rows, sum(ts) and sum(amount) of each Delta table,
      read with Delta's reference implementation.

The jars (spark-sql-kafka-0-10, spark-avro, delta-spark and what they need beyond PySpark's
own jars) come as a comma-separated list in SPARK_PEER_JARS. Everything listens on
127.0.0.1 only and the web UI is off.
"""

import argparse
import json
import os
import sys
import time


def session(app, master, extra):
    from pyspark.sql import SparkSession

    b = (
        SparkSession.builder.appName(app)
        .master(master)
        .config("spark.jars", os.environ["SPARK_PEER_JARS"])
        .config("spark.sql.extensions", "io.delta.sql.DeltaSparkSessionExtension")
        .config("spark.sql.catalog.spark_catalog", "org.apache.spark.sql.delta.catalog.DeltaCatalog")
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
    )
    for kv in extra:
        k, _, v = kv.partition("=")
        b = b.config(k, v)
    spark = b.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    return spark


def stop(spark):
    """Stops the session and waits for the JVM, so that its CPU time and peak RSS count as
    this process's children's (the caller measures them with getrusage)."""
    gateway = spark.sparkContext._gateway
    proc = getattr(gateway, "proc", None)
    spark.stop()
    try:
        gateway.shutdown()
    except Exception:  # noqa: BLE001 - the JVM may already be gone
        pass
    if proc is not None:
        if proc.stdin is not None:
            proc.stdin.close()  # the gateway server exits when its stdin closes
        try:
            proc.wait(timeout=60)
        except Exception:  # noqa: BLE001
            proc.kill()
            proc.wait()


def stream(a):
    from pyspark.sql.avro.functions import from_avro

    with open(a.schema_file, encoding="utf-8") as f:
        schema = json.dumps(json.load(f), separators=(",", ":"))
    t0 = time.monotonic()
    spark = session("spillway-spark-peer", a.master, a.conf)
    t_session = time.monotonic() - t0
    reader = (
        spark.readStream.format("kafka")
        .option("kafka.bootstrap.servers", a.bootstrap)
        .option("subscribe", a.topic)
        .option("startingOffsets", "earliest")
        .option("failOnDataLoss", "true")
    )
    if a.max_offsets_per_trigger > 0:
        reader = reader.option("maxOffsetsPerTrigger", str(a.max_offsets_per_trigger))
    rows = reader.load().select(from_avro("value", schema).alias("r")).select("r.*")
    t1 = time.monotonic()
    query = (
        rows.writeStream.format("delta")
        .outputMode("append")
        .option("checkpointLocation", a.checkpoint)
        .trigger(availableNow=True)
        .start(a.table)
    )
    query.awaitTermination()
    t_query = time.monotonic() - t1
    batches = [
        {
            "batchId": p["batchId"],
            "numInputRows": p["numInputRows"],
            "triggerExecutionMs": p.get("durationMs", {}).get("triggerExecution"),
            "addBatchMs": p.get("durationMs", {}).get("addBatch"),
        }
        for p in query.recentProgress
        if p.get("numInputRows", 0) > 0
    ]
    failed = query.exception()
    stop(spark)
    result = {
        "sessionSeconds": round(t_session, 3),
        "querySeconds": round(t_query, 3),
        "rows": sum(b["numInputRows"] for b in batches),
        "batches": batches,
        "error": None if failed is None else str(failed),
    }
    print("SPARK_PEER_RESULT " + json.dumps(result), flush=True)
    return 0 if failed is None else 1


def count(a):
    from pyspark.sql import functions as F

    spark = session("spillway-spark-peer-count", a.master, a.conf)
    out = {}
    for t in a.table:
        r = spark.read.format("delta").load(t).agg(
            F.count("*").alias("rows"), F.sum("ts").alias("sum_ts"), F.sum("amount").alias("sum_amount")
        ).collect()[0]
        out[t] = {"rows": r["rows"], "sum_ts": r["sum_ts"], "sum_amount": r["sum_amount"]}
    stop(spark)
    print("SPARK_PEER_COUNT " + json.dumps(out), flush=True)
    return 0


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    for name in ("stream", "count"):
        s = sub.add_parser(name)
        s.add_argument("--master", default="local[2]")
        s.add_argument("--conf", action="append", default=[], help="extra Spark setting key=value")
        s.add_argument("--table", action="append" if name == "count" else "store", required=True)
    s = sub.choices["stream"]
    s.add_argument("--bootstrap", required=True)
    s.add_argument("--topic", required=True)
    s.add_argument("--schema-file", required=True)
    s.add_argument("--checkpoint", required=True)
    s.add_argument("--max-offsets-per-trigger", type=int, default=0, help="0: no limit")
    a = p.parse_args()
    return stream(a) if a.cmd == "stream" else count(a)


if __name__ == "__main__":
    sys.exit(main())
