//! `spillway validate` as a user runs it: exit codes and one line per problem with its path.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::process::Command;

fn spillway() -> Command {
    Command::new(env!("CARGO_BIN_EXE_spillway"))
}

fn samples() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../config/samples")
}

#[test]
fn samples_are_valid() {
    let mut n = 0;
    for entry in std::fs::read_dir(samples()).unwrap() {
        let path = entry.unwrap().path();
        let out = spillway()
            .args(["validate", "-f"])
            .arg(&path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains("valid StreamingPipeline"));
        n += 1;
    }
    assert_eq!(n, 6);
}

#[test]
fn raw_sample_schema_is_the_hsutest_schema() {
    let sample: serde_yaml::Value = serde_yaml::from_str(
        &std::fs::read_to_string(samples().join("hsutest-raw-avro-parquet.yaml")).unwrap(),
    )
    .unwrap();
    let inline = sample["spec"]["format"]["avro"]["writerSchema"]["inline"]
        .as_str()
        .unwrap();
    let avsc = std::fs::read_to_string(samples().join("../schemas/hsutest.avsc")).unwrap();
    let a: serde_json::Value = serde_json::from_str(inline).unwrap();
    let b: serde_json::Value = serde_json::from_str(&avsc).unwrap();
    assert_eq!(a, b);
}

#[test]
fn invalid_manifest_lists_every_problem_with_its_path() {
    let dir = std::env::temp_dir().join(format!("spillway-validate-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("bad.yaml");
    std::fs::write(
        &file,
        r#"
apiVersion: spillway.dev/v1alpha1
kind: StreamingPipeline
metadata: {name: bad}
spec:
  source: {kafka: {bootstrapServers: "k:9092", topics: [t], topicPattern: "t.*"}}
  format: {avro: {encoding: raw, writerSchema: {file: missing.avsc}}}
  sink: {delta: {uri: /tmp/t, mode: merge}, parquet: {uri: /tmp/p}}
  checkpoint: {uri: /tmp/c}
  trigger: {interval: 5s, availableNow: true}
"#,
    )
    .unwrap();
    let out = spillway()
        .args(["validate", "-f"])
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for line in [
        "spec.source.kafka: exactly one of topics or topicPattern must be set",
        "spec.sink: exactly one of delta or parquet must be set",
        "spec.sink.delta.merge: mode merge requires merge with keys",
        "spec.trigger: interval and availableNow are mutually exclusive",
        "spec.format.avro.writerSchema.file: cannot read missing.avsc",
    ] {
        assert!(stderr.contains(line), "missing {line:?} in:\n{stderr}");
    }
}

/// Incremental rebalancing is refused before anything runs (the worker positions whole
/// eager assignments from the sink), with the field path and what to use instead.
#[test]
fn cooperative_sticky_is_refused_by_validate_and_run() {
    let dir = std::env::temp_dir().join(format!("spillway-validate-coop-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("coop.yaml");
    let text = std::fs::read_to_string(samples().join("orders-delta-append.yaml"))
        .unwrap()
        .replacen(
            "    kafka:\n",
            "    kafka:\n      properties: {partition.assignment.strategy: cooperative-sticky}\n",
            1,
        );
    assert!(text.contains("cooperative-sticky"), "{text}");
    std::fs::write(&file, text).unwrap();
    let want = "spec.source.kafka.properties: incremental rebalancing is not supported: \
                partition.assignment.strategy must not include cooperative-sticky and \
                group.protocol must be classic (use range or roundrobin)";
    for args in [
        &["validate", "-f"][..],
        &["run", "--http", "127.0.0.1:0", "-f"][..],
    ] {
        let out = spillway().args(args).arg(&file).output().unwrap();
        assert!(!out.status.success(), "{args:?} accepted it");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(want),
            "{args:?}: missing {want:?} in:\n{stderr}"
        );
    }
}

/// A JSON row schema that cannot be columns is refused before anything runs, at its path,
/// with the JSON pointer inside it.
#[test]
fn a_json_row_schema_without_columns_is_refused_with_its_pointer() {
    let dir = std::env::temp_dir().join(format!("spillway-validate-json-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("json.yaml");
    let text = std::fs::read_to_string(samples().join("orders-json-parquet.yaml"))
        .unwrap()
        .replace(
            r#""status": {"type": "string"}"#,
            r#""status": {"oneOf": [{"type": "string"}, {"type": "integer"}]}"#,
        );
    assert!(text.contains("oneOf"));
    std::fs::write(&file, text).unwrap();
    let out = spillway()
        .args(["validate", "-f"])
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let want =
        "spec.format.json.schema.inline: row schema at #/properties/status/oneOf: is not supported";
    assert!(stderr.contains(want), "missing {want:?} in:\n{stderr}");
}

#[test]
fn a_protobuf_message_type_the_schema_lacks_is_refused_locally() {
    let dir = std::env::temp_dir().join(format!("spillway-validate-proto-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let sample = std::fs::read_to_string(samples().join("orders-protobuf-delta.yaml")).unwrap();
    let cases = [
        (
            sample.replace("messageType: shop.v1.Order", "messageType: shop.v1.Refund"),
            "spec.format.protobuf.schema.inline: protobuf schema at shop.v1.Refund: no such message in the schema",
        ),
        (
            sample.replace("message Line {", "message Line { Line next = 3;"),
            "spec.format.protobuf.schema.inline: protobuf schema at shop.v1.Order.lines.next: shop.v1.Order.Line is recursive",
        ),
        (
            sample.replace("int64 order_id = 1;", "int64 order_id = 1"),
            "spec.format.protobuf.schema.inline: protobuf schema at schema.proto:",
        ),
    ];
    for (i, (text, want)) in cases.iter().enumerate() {
        let file = dir.join(format!("proto-{i}.yaml"));
        std::fs::write(&file, text).unwrap();
        let out = spillway()
            .args(["validate", "-f"])
            .arg(&file)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(want), "missing {want:?} in:\n{stderr}");
    }
}

#[test]
fn unparseable_manifest_names_the_field() {
    let dir = std::env::temp_dir().join(format!("spillway-validate-parse-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("typo.yaml");
    let text = std::fs::read_to_string(samples().join("orders-delta-append.yaml"))
        .unwrap()
        .replace("startingOffsets: earliest", "startingOffsets: oldest");
    std::fs::write(&file, text).unwrap();
    let out = spillway()
        .args(["validate", "-f"])
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("spec.source.kafka.startingOffsets: unknown variant `oldest`"),
        "{stderr}"
    );
}

#[test]
fn missing_file_is_a_clear_error() {
    let out = spillway()
        .args(["validate", "-f", "/nonexistent/pipeline.yaml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("No such file"));
}
