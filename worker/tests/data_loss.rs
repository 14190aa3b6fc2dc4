//! Offsets deleted from Kafka before the pipeline read them are detected and reported as
//! data loss, on a broker that really deletes them: librdkafka's mock cluster keeps at
//! most 5 MiB per partition and drops the oldest record batches beyond that (tansu 0.6
//! cannot delete records). `onDataLoss: fail` stops with the lost range; `skip` resumes at
//! the earliest offset still there and counts what was lost.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::mocking::MockCluster;
mod common;

use spillway_e2e as support;
use spillway_worker::engine::EngineError;
use spillway_worker::source::SourceError;

fn produce(bootstrap: &str, topic: &str, count: u64, seed: u64) {
    common::produce(bootstrap, topic, count, seed, &[]);
}

fn manifest_text(bootstrap: &str, topic: &str, dir: &Path, on_data_loss: &str) -> String {
    format!(
        r#"apiVersion: spillway.dev/v1alpha1
kind: StreamingPipeline
metadata: {{name: {topic}}}
spec:
  source:
    kafka:
      bootstrapServers: "{bootstrap}"
      topics: [{topic}]
      onDataLoss: {on_data_loss}
      maxRecordsPerBatch: 100000
  format:
    avro:
      encoding: raw
      writerSchema:
        inline: '{schema}'
  transform:
    metadataColumns: [partition, offset]
  sink:
    delta: {{uri: "{table}"}}
  checkpoint: {{uri: "{checkpoint}"}}
  trigger: {{availableNow: true}}
"#,
        schema = spillway_worker::generate::HSUTEST_SCHEMA,
        table = dir.join("t").display(),
        checkpoint = dir.join("c").display(),
    )
}

async fn run(text: &str) -> Result<spillway_worker::engine::RunSummary, EngineError> {
    common::run_available_now(text).await
}

fn watermarks(bootstrap: &str, topic: &str) -> (i64, i64) {
    let c: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .unwrap();
    c.fetch_watermarks(topic, 0, Duration::from_secs(10))
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offsets_deleted_before_they_were_read_are_reported_as_data_loss() {
    let mock = MockCluster::new(1).unwrap();
    let bootstrap = mock.bootstrap_servers();
    let topic = support::unique("loss");
    mock.create_topic(&topic, 1, 1).unwrap();
    let dir = std::env::temp_dir().join(support::unique("loss"));
    std::fs::create_dir_all(&dir).unwrap();

    // 1,000 records land in the table.
    produce(&bootstrap, &topic, 1_000, 1);
    let first = run(&manifest_text(&bootstrap, &topic, &dir, "fail"))
        .await
        .unwrap();
    assert_eq!(first.rows, 1_000);

    // 400,000 more (about 14 MiB) push the oldest record batches out of the log: the
    // offsets from 1,000 up to the new log start are gone before the pipeline read them.
    let b2 = bootstrap.clone();
    let t2 = topic.clone();
    tokio::task::spawn_blocking(move || produce(&b2, &t2, 400_000, 2))
        .await
        .unwrap();
    let (low, high) = watermarks(&bootstrap, &topic);
    assert!(low > 1_000, "the log start moved past the table: {low}");

    // onDataLoss: fail — the run stops and names the lost range.
    let err = run(&manifest_text(&bootstrap, &topic, &dir, "fail"))
        .await
        .unwrap_err();
    match &err {
        EngineError::Source(SourceError::DataLoss { tp, from, to }) => {
            assert_eq!((tp.partition, *from, *to), (0, 1_000, low), "{err}");
        }
        other => panic!("expected data loss, got {other}"),
    }
    assert!(err.to_string().contains("1000"), "{err}");

    // onDataLoss: skip — the run resumes at the log start and counts the lost offsets.
    let skipped = run(&manifest_text(&bootstrap, &topic, &dir, "skip"))
        .await
        .unwrap();
    assert_eq!(skipped.lost_offsets, low - 1_000);
    assert_eq!(skipped.rows, high - low);

    // The table: the first 1,000 and everything from the log start, each exactly once.
    let script = r#"
import json, os, sys, deltalake
t = deltalake.DeltaTable(sys.argv[1]).to_pyarrow_table(columns=["_offset"])
o = t.column("_offset").to_pylist()
print(json.dumps([t.num_rows, len(set(o)), min(o), max(o)]), flush=True)
os._exit(0)
"#;
    let (rows, distinct, min, max): (i64, i64, i64, i64) =
        common::python_json(script, &[&dir.join("t").display().to_string()]);
    let want = 1_000 + high - low;
    assert_eq!((rows, distinct, min, max), (want, want, 0, high - 1));
}
