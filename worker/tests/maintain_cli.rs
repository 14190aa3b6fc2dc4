//! `spillway maintain optimize|vacuum` on a table the pipeline wrote in many small commits,
//! checked with the Python `deltalake` package: optimize lowers the file count while the
//! rows stay identical; vacuum removes only unreferenced files older than the retention,
//! and refuses a retention under 7 days unless told.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::process::{Command, Output};

use common::manifest::Manifest;
use serde_json::json;
use spillway_e2e as support;

fn maintain(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_spillway"))
        .arg("maintain")
        .args(args)
        .output()
        .unwrap()
}

fn stdout_of(out: &Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// (rows, distinct offsets, sum of amounts in cents, referenced files).
fn table(uri: &str) -> (u64, u64, i64, u64) {
    let script = r#"
import json, os, sys, deltalake
dt = deltalake.DeltaTable(sys.argv[1])
t = dt.to_pyarrow_table(columns=["_partition", "_offset", "amount"])
pairs = set(zip(t.column("_partition").to_pylist(), t.column("_offset").to_pylist()))
cents = sum(round(a * 100) for a in t.column("amount").to_pylist())
print(json.dumps([t.num_rows, len(pairs), cents, len(dt.file_uris())]), flush=True)
os._exit(0)
"#;
    common::python_json(script, &[uri])
}

fn parquet_files_on_disk(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".parquet"))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn optimize_compacts_and_vacuum_deletes_only_old_unreferenced_files() {
    support::require("kafka", &support::kafka_bootstrap()).unwrap();
    let topic = support::unique("maintain");
    common::produce(
        &support::kafka_bootstrap(),
        &topic,
        12_000,
        51,
        &["--partitions", "1"],
    );
    let dir = std::env::temp_dir().join(support::unique("maintain"));
    std::fs::create_dir_all(&dir).unwrap();
    let table_dir = dir.join("t");
    let manifest = dir.join("pipeline.yaml");
    std::fs::write(
        &manifest,
        Manifest::hsutest(&topic)
            .kafka("maxRecordsPerBatch", 1000)
            .metadata_columns(&["partition", "offset"])
            .delta(&table_dir)
            .checkpoint(dir.join("c"))
            .available_now()
            .set(
                "/spec/maintenance",
                json!({
                    "optimize": {"schedule": "0 * * * *", "targetFileSize": 104_857_600},
                    "vacuum": {"schedule": "30 3 * * *"},
                }),
            )
            .yaml(),
    )
    .unwrap();
    let text = std::fs::read_to_string(&manifest).unwrap();
    let run = common::run_available_now(&text).await.unwrap();
    assert!(run.batches >= 10, "many small commits: {run:?}");
    let uri = table_dir.display().to_string();
    let before = table(&uri);
    assert_eq!((before.0, before.1), (12_000, 12_000));
    assert!(before.3 >= 10, "{before:?}");

    let m = manifest.to_str().unwrap();
    let out = stdout_of(&maintain(&["optimize", "-f", m]));
    assert!(
        out.contains(&format!("optimize: {} files compacted into 1", before.3)),
        "{out}"
    );
    let after = table(&uri);
    assert_eq!(
        (after.0, after.1, after.2),
        (before.0, before.1, before.2),
        "same rows"
    );
    assert_eq!(after.3, 1, "one file");
    assert_eq!(parquet_files_on_disk(&table_dir), before.3 as usize + 1);

    // Under 7 days only when asked; and files unreferenced for less than the retention stay.
    let refused = maintain(&["vacuum", "-f", m, "--retention", "1h"]);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("--allow-short-retention"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    let out = stdout_of(&maintain(&[
        "vacuum",
        "-f",
        m,
        "--retention",
        "1h",
        "--allow-short-retention",
    ]));
    assert!(
        out.contains("vacuum: 0 unreferenced files deleted"),
        "{out}"
    );
    assert_eq!(parquet_files_on_disk(&table_dir), before.3 as usize + 1);
    // With no retention at all, every file the compaction replaced goes; the table stays.
    let out = stdout_of(&maintain(&[
        "vacuum",
        "-f",
        m,
        "--retention",
        "0s",
        "--allow-short-retention",
    ]));
    assert!(
        out.contains(&format!("vacuum: {} unreferenced files deleted", before.3)),
        "{out}"
    );
    assert_eq!(parquet_files_on_disk(&table_dir), 1);
    assert_eq!(table(&uri), after);
}
