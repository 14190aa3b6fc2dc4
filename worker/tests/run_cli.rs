//! `spillway run -f` as a user runs it: it serves progress while committing, and SIGTERM
//! stops it cleanly within a bound — the open batch committed, never half-committed.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::manifest::Manifest;
use serde_json::json;
use spillway_e2e as support;

fn committed_offsets(progress: &serde_json::Value) -> i64 {
    progress["latest"]["sources"][0]["endOffset"]
        .as_object()
        .map(|t| {
            t.values()
                .flat_map(|p| p.as_object().unwrap().values().map(|o| o.as_i64().unwrap()))
                .sum()
        })
        .unwrap_or(0)
}

/// `spillway produce` of HsuTestEvents into `topic`.
fn produce(topic: &str, count: &str, seed: &str, partitions: Option<&str>) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_spillway"));
    cmd.args([
        "produce",
        "--bootstrap",
        &support::kafka_bootstrap(),
        "--topic",
        topic,
        "--count",
        count,
        "--seed",
        seed,
    ]);
    if let Some(p) = partitions {
        cmd.args(["--partitions", p]);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_commits_the_open_batch_and_exits_zero() {
    support::require("kafka", &support::kafka_bootstrap()).unwrap();
    let topic = support::unique("run");
    produce(&topic, "5000", "9", Some("1"));
    let dir = std::env::temp_dir().join(support::unique("run-cli"));
    std::fs::create_dir_all(&dir).unwrap();
    let manifest = dir.join("pipeline.yaml");
    // Relative paths, resolved against the manifest's directory.
    std::fs::write(
        &manifest,
        Manifest::hsutest(&topic)
            .kafka("maxRecordsPerBatch", 1000)
            .kafka(
                "properties",
                json!({"session.timeout.ms": "10000", "max.poll.interval.ms": "10000"}),
            )
            .set(
                "/spec/format/avro/writerSchema",
                json!({"file": "../../config/schemas/hsutest.avsc"}),
            )
            .metadata_columns(&["partition", "offset"])
            .delta("table")
            .checkpoint("checkpoint")
            .interval("1h")
            .yaml(),
    )
    .unwrap();
    // The schema file path is relative to the manifest: copy the schemas next to it.
    let schemas = dir.join("../../config/schemas");
    std::fs::create_dir_all(&schemas).unwrap();
    std::fs::copy(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/schemas/hsutest.avsc"),
        schemas.join("hsutest.avsc"),
    )
    .unwrap();

    let port = spillway_e2e::free_port().unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_spillway"))
        .args(["run", "--http", &format!("127.0.0.1:{port}"), "-f"])
        .arg(&manifest)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut committed = 0;
    while Instant::now() < deadline && committed < 5000 {
        if let Ok(r) = client
            .get(format!("http://127.0.0.1:{port}/progress"))
            .send()
            .await
        {
            committed = committed_offsets(&r.json().await.unwrap());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        committed, 5000,
        "five batches of maxRecordsPerBatch committed"
    );
    // More records arrive; the 1h trigger keeps their batch open until SIGTERM.
    produce(&topic, "300", "10", None);
    // Wait until the worker holds records of the open batch (Spark's isDataAvailable).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let p: serde_json::Value = client
            .get(format!("http://127.0.0.1:{port}/progress"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if p["status"]["isDataAvailable"] == true {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the new records never reached the worker: {p}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let stop = Instant::now();
    assert!(
        Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stop.elapsed() < Duration::from_secs(30),
        "stopped within the bound"
    );
    let rows: u64 = stdout
        .split("stopped: 6 batches, ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|r| r.parse().ok())
        .unwrap_or_else(|| panic!("the open batch was not committed at shutdown: {stdout}"));
    assert!((5001..=5300).contains(&rows), "{stdout}");

    let script = "import json, os, sys, deltalake\nt = deltalake.DeltaTable(sys.argv[1]).to_pyarrow_table(columns=['_offset'])\nprint(json.dumps([t.num_rows, len(set(t.column('_offset').to_pylist()))]), flush=True)\nos._exit(0)\n";
    let py = Command::new(support::python())
        .args(["-c", script])
        .arg(dir.join("table"))
        .output()
        .unwrap();
    let counts: (u64, u64) = serde_json::from_slice(&py.stdout)
        .unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&py.stderr)));
    assert_eq!(counts, (rows, rows), "every committed offset exactly once");
}
