//! The `spillway bench` commands as a user runs them (small sizes: the figures themselves
//! come from release builds, see `docs/benchmarks.md`; nothing here asserts a speed).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;

use spillway_e2e as support;

fn bench(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_spillway"))
        .arg("bench")
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn bench_decode_prints_avro_json_and_protobuf_beside_their_peers() {
    let text = bench(&["decode", "--records", "20000"]);
    let rows: Vec<&str> = text
        .lines()
        .filter(|l| {
            l.starts_with("HsuTestEvent") || l.starts_with("WideEvent") || l.starts_with("Order")
        })
        .collect();
    assert_eq!(rows.len(), 6, "two rows per format: {text}");
    for r in rows {
        assert!(r.contains(" 20000 "), "{r}");
        assert!(r.trim_end().ends_with('x'), "a ratio: {r}");
    }
    for peer in [
        "apache_avro::from_avro_datum",
        "arrow-json: its Decoder",
        "prost-reflect's decode",
    ] {
        assert!(text.contains(peer), "{peer} in {text}");
    }
}

#[test]
fn bench_pipeline_measures_raw_consume_and_both_sinks_on_one_topic() {
    support::require("kafka", &support::kafka_bootstrap()).unwrap();
    let topic = support::unique("bench");
    let text = bench(&[
        "pipeline",
        "--bootstrap",
        &support::kafka_bootstrap(),
        "--records",
        "20000",
        "--topic",
        &topic,
    ]);
    let line = |prefix: &str| {
        text.lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no {prefix} line in\n{text}"))
            .split_whitespace()
            .collect::<Vec<_>>()
    };
    // Every record read by every phase, with a CPU figure.
    for prefix in [
        "(a) raw consume, defaults",
        "(a) raw consume, tuned",
        "(b) Kafka -> Delta",
        "(c) Kafka -> Parquet",
    ] {
        let l = line(prefix);
        assert!(l.contains(&"20000"), "{prefix}: {text}");
        assert!(
            !l.contains(&"n/a"),
            "{prefix}: CPU and RSS measured: {text}"
        );
    }
    assert!(text.contains("ratio b/a: "), "{text}");
    assert!(text.contains(", c/a: "), "{text}");
    assert!(text.contains("ceiling a = raw consume, "), "{text}");
    assert!(text.contains("peak RSS"), "{text}");
}

#[test]
fn bench_merge_prints_append_and_merge_rates_and_the_ratio() {
    let text = bench(&[
        "merge",
        "--rows",
        "20000",
        "--days",
        "20",
        "--build-batch",
        "5000",
        "--batch",
        "2000",
        "--batches",
        "2",
        "--plain",
        "--delta-rs",
    ]);
    assert!(text.contains("ratio merge/append "), "{text}");
    assert!(text.contains("ratio plain/append "), "{text}");
    assert!(text.contains("ratio delta-rs/append "), "{text}");
    assert!(text.contains("rewritten"), "{text}");
    // Two batch rows, each with the rows it kept (≈90 % of 2,000) and its MERGE figures.
    let rows: Vec<&str> = text
        .lines()
        .filter(|l| l.trim_start().starts_with(['0', '1']))
        .collect();
    assert_eq!(rows.len(), 2, "{text}");
    for r in rows {
        let kept: u64 = r.split_whitespace().nth(1).unwrap().parse().unwrap();
        assert!((1_700..2_000).contains(&kept), "{r}");
    }
    assert!(
        text.contains("rows of the merged table at the end: "),
        "{text}"
    );
}

#[test]
fn bench_log_makes_commits_with_checkpoints_and_opens_the_table() {
    let text = bench(&["log", "--commits", "230"]);
    assert!(text.contains("230 streaming commits"), "{text}");
    assert!(text.contains("2 checkpoints written"), "{text}");
    assert!(text.contains("opening the table at version 229"), "{text}");
}
