//! Large records against Apache Kafka: 60,000 HsuTestEvents with a 5 KB string and three of
//! 9 MiB, on one partition, through `spillway run` with `maxBytesPerBatch: 8 MiB`. Every
//! batch (a Delta version, its offsets read from the commit's file statistics) holds at most
//! 8 MiB of record bytes, or a single record larger than that; every offset lands exactly
//! once (read back with Python `deltalake`); and the cap bounds the worker's memory: its
//! peak RSS is below that of a run taking the topic as one batch by more than half of the
//! record bytes (measured: 242 MiB against 546 MiB for 317 MiB of records).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use apache_avro::types::Value;
use common::manifest::Manifest;
use spillway_e2e as support;

const N: i64 = 60_000;
const CAP: i64 = 8 * 1024 * 1024;
/// The offsets of the records larger than the cap: two in a row, and the last one.
const BIG: [i64; 3] = [20_000, 20_001, N - 1];

fn event(i: i64) -> String {
    let len = if BIG.contains(&i) {
        9 * 1024 * 1024 + i as usize
    } else {
        5_000 + (i % 97) as usize
    };
    let c = char::from(b'a' + (i % 26) as u8);
    std::iter::repeat_n(c, len).collect()
}

fn record(schema: &apache_avro::Schema, i: i64) -> Vec<u8> {
    let fields = vec![
        ("user".to_string(), Value::String(format!("u{}", i % 10))),
        ("event".to_string(), Value::String(event(i))),
        ("amount".to_string(), Value::Double(i as f64)),
        ("ts".to_string(), Value::Long(1_700_000_000_000 + i)),
    ];
    apache_avro::to_avro_datum(schema, Value::Record(fields)).unwrap()
}

/// Produces the records to partition 0 in order, with a producer allowed 16 MiB messages.
async fn produce(topic: &str, records: &[Vec<u8>]) {
    use rdkafka::producer::{FutureProducer, FutureRecord};
    let producer: FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", support::kafka_bootstrap())
        .set("enable.idempotence", "true")
        .set("linger.ms", "20")
        .set("message.max.bytes", "16777216")
        .create()
        .unwrap();
    for chunk in records.chunks(5_000) {
        let sends = chunk.iter().map(|payload| {
            let producer = producer.clone();
            async move {
                producer
                    .send(
                        FutureRecord::<(), _>::to(topic)
                            .payload(payload)
                            .partition(0),
                        Duration::from_secs(120),
                    )
                    .await
                    .map_err(|(e, _)| e)
                    .unwrap();
            }
        });
        futures::future::join_all(sends).await;
    }
}

/// Per Delta version with data: (first offset, last offset, rows), from the commit's `add`
/// actions' statistics.
fn batches(table: &Path) -> BTreeMap<u64, (i64, i64, i64)> {
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(table.join("_delta_log")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let Some(version) = name
            .strip_suffix(".json")
            .and_then(|v| v.parse::<u64>().ok())
        else {
            continue;
        };
        for line in std::fs::read_to_string(&path).unwrap().lines() {
            let action: serde_json::Value = serde_json::from_str(line).unwrap();
            let Some(stats) = action["add"]["stats"].as_str() else {
                continue;
            };
            let stats: serde_json::Value = serde_json::from_str(stats).unwrap();
            let (lo, hi, rows) = (
                stats["minValues"]["_offset"].as_i64().unwrap(),
                stats["maxValues"]["_offset"].as_i64().unwrap(),
                stats["numRecords"].as_i64().unwrap(),
            );
            let e = out.entry(version).or_insert((lo, hi, 0));
            *e = (e.0.min(lo), e.1.max(hi), e.2 + rows);
        }
    }
    out
}

/// Runs `spillway run` to its end, polling its peak RSS (`VmHWM`, in bytes) meanwhile.
fn run_measured(manifest: &Path, log: &Path) -> u64 {
    let mut child = Command::new(env!("CARGO_BIN_EXE_spillway"))
        .args(["run", "--http", "127.0.0.1:0", "-f"])
        .arg(manifest)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap();
    let status_path = format!("/proc/{}/status", child.id());
    let deadline = Instant::now() + Duration::from_secs(600);
    let mut peak = 0u64;
    loop {
        if let Ok(status) = std::fs::read_to_string(&status_path)
            && let Some(kb) = status
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        {
            peak = peak.max(kb * 1024);
        }
        if let Some(exit) = child.try_wait().unwrap() {
            assert!(
                exit.success(),
                "spillway run failed: {}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
            return peak;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("spillway run did not finish in 600 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Writes the pipeline manifest `<dir>/<name>.yaml`: the topic into the Delta table
/// `<dir>/<name>` with `maxBytesPerBatch: cap`.
fn write_manifest(topic: &str, dir: &Path, name: &str, cap: i64) -> std::path::PathBuf {
    let path = dir.join(format!("{name}.yaml"));
    let text = Manifest::hsutest(topic)
        .name(&format!("{topic}-{name}"))
        .kafka("maxBytesPerBatch", cap)
        .metadata_columns(&["partition", "offset"])
        .delta(dir.join(name))
        .checkpoint(dir.join(format!("{name}-checkpoint")))
        .available_now()
        .yaml();
    std::fs::write(&path, text).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_stay_under_the_byte_cap_and_every_large_record_lands() {
    support::require("kafka", &support::kafka_bootstrap()).unwrap();
    let topic = support::unique("large-records");
    let dir = std::env::temp_dir().join(support::unique("large-records"));
    std::fs::create_dir_all(&dir).unwrap();
    common::create_topic(&topic, 1, &[("max.message.bytes", "16777216")]).await;
    let schema =
        apache_avro::Schema::parse_str(spillway_worker::tools::generate::HSUTEST_SCHEMA).unwrap();
    let records: Vec<Vec<u8>> = (0..N).map(|i| record(&schema, i)).collect();
    let sizes: Vec<i64> = records.iter().map(|r| r.len() as i64).collect();
    let written: i64 = sizes.iter().sum();
    produce(&topic, &records).await;
    drop(records);

    // The same topic with the cap, then as one batch (the widest cap, 1 GiB), each into its
    // own table, each run measured as a process of its own.
    let table = dir.join("table");
    let peak = run_measured(
        &write_manifest(&topic, &dir, "capped", CAP),
        &dir.join("capped.log"),
    );
    let whole = run_measured(
        &write_manifest(&topic, &dir, "whole", 1024 * 1024 * 1024),
        &dir.join("whole.log"),
    );
    std::fs::rename(dir.join("capped"), &table).unwrap();

    // Each batch: contiguous offsets, at most CAP record bytes or one record alone.
    let batches = batches(&table);
    let mut next = 0;
    for (version, (lo, hi, rows)) in &batches {
        assert_eq!(*lo, next, "version {version} starts where the last ended");
        assert_eq!(
            rows,
            &(hi - lo + 1),
            "version {version}: contiguous offsets"
        );
        let bytes: i64 = sizes[*lo as usize..=*hi as usize].iter().sum();
        assert!(
            bytes <= CAP || *rows == 1,
            "version {version}: {rows} records of {bytes} bytes pass the {CAP}-byte cap"
        );
        next = hi + 1;
    }
    assert_eq!(next, N, "the batches cover the topic");
    for big in BIG {
        assert!(
            batches.values().any(|b| *b == (big, big, 1)),
            "the {}-byte record at offset {big} goes alone",
            sizes[big as usize]
        );
    }
    assert!(
        batches.len() as i64 >= written / CAP,
        "{} batches for {written} bytes",
        batches.len()
    );

    // Every offset exactly once, and the large values whole, read by Python deltalake.
    let (rows, offsets) = common::python_pairs(&table.display().to_string());
    assert_eq!(rows, N as u64, "no duplicates");
    let want: std::collections::BTreeSet<(i32, i64)> = (0..N).map(|o| (0, o)).collect();
    assert_eq!(offsets, want, "every offset once");
    let lengths: (u64, u64) = common::python_json(
        r#"
import json, os, sys, deltalake, pyarrow.compute as pc
t = deltalake.DeltaTable(sys.argv[1]).to_pyarrow_table(columns=["event"])
lengths = pc.utf8_length(t.column("event"))
print(json.dumps([pc.sum(lengths).as_py(), pc.max(lengths).as_py()]), flush=True)
os._exit(0)
"#,
        &[&table.display().to_string()],
    );
    let want_total: u64 = (0..N).map(|i| event(i).len() as u64).sum();
    assert_eq!(lengths, (want_total, event(N - 1).len() as u64));

    eprintln!(
        "{} batches, {} MiB of records: peak RSS {} MiB with an 8 MiB cap, {} MiB in one batch",
        batches.len(),
        written >> 20,
        peak >> 20,
        whole >> 20
    );
    assert_eq!(
        common::python_pairs(&dir.join("whole").display().to_string()).0,
        N as u64,
        "the whole topic as one batch lands too"
    );
    // Both runs hold the same consumer prefetch; one batch of the topic holds its records
    // on top of it, the capped runs 8 MiB of them.
    assert!(
        whole.saturating_sub(peak) as i64 > written / 2,
        "peak RSS {peak} bytes with the cap against {whole} in one batch, for {written} bytes of \
         records: the cap does not bound memory"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
