//! Invalid manifests are rejected with the right field path by `validate` (Rust) and by the
//! CRD's CEL rules evaluated client-side with kube-cel — the same cases, the same paths.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use kube_cel::Validator;
use serde_json::{Value, json};
use spillway_api::{crd, manifest, validate};

fn base() -> Value {
    json!({
        "apiVersion": "spillway.dev/v1alpha1",
        "kind": "StreamingPipeline",
        "metadata": {"name": "p", "namespace": "ns"},
        "spec": {
            "source": {"kafka": {"bootstrapServers": "k:9092", "topics": ["t"]}},
            "format": {"avro": {"encoding": "confluent", "schemaRegistry": {"url": "http://r:8081"}}},
            "sink": {"delta": {"uri": "s3://lake/t"}},
            "checkpoint": {"uri": "s3://lake/c"},
            "storage": {"region": "eu-west-1"}
        }
    })
}

fn raw_avro(v: &mut Value) {
    v["spec"]["format"]["avro"] =
        json!({"encoding": "raw", "writerSchema": {"inline": "\"long\""}});
}

type Mutation = fn(&mut Value);

/// (case, mutation, expected field path of the problem)
const CASES: &[(&str, Mutation, &str)] = &[
    (
        "both sinks",
        |v| v["spec"]["sink"]["parquet"] = json!({"uri": "/tmp/p"}),
        "spec.sink",
    ),
    ("no sink", |v| v["spec"]["sink"] = json!({}), "spec.sink"),
    (
        "topics and pattern",
        |v| v["spec"]["source"]["kafka"]["topicPattern"] = json!("t.*"),
        "spec.source.kafka",
    ),
    (
        "neither topics nor pattern",
        |v| {
            v["spec"]["source"]["kafka"]
                .as_object_mut()
                .map(|o| o.remove("topics"));
        },
        "spec.source.kafka",
    ),
    (
        "raw without writer schema",
        |v| v["spec"]["format"]["avro"] = json!({"encoding": "raw"}),
        "spec.format.avro.writerSchema",
    ),
    (
        "confluent without registry",
        |v| v["spec"]["format"]["avro"] = json!({"encoding": "confluent"}),
        "spec.format.avro.schemaRegistry",
    ),
    (
        "confluent with writer schema",
        |v| v["spec"]["format"]["avro"]["writerSchema"] = json!({"inline": "\"long\""}),
        "spec.format.avro.writerSchema",
    ),
    (
        "writer schema from two places",
        |v| {
            raw_avro(v);
            v["spec"]["format"]["avro"]["writerSchema"]["file"] = json!("a.avsc");
        },
        "spec.format.avro.writerSchema",
    ),
    (
        "registry reader without registry",
        |v| {
            raw_avro(v);
            v["spec"]["format"]["avro"]["readerSchema"] =
                json!({"registry": {"version": "latest"}});
        },
        "spec.format.avro.readerSchema",
    ),
    (
        "reader schema from two places",
        |v| {
            v["spec"]["format"]["avro"]["readerSchema"] =
                json!({"registry": {}, "inline": "\"long\""})
        },
        "spec.format.avro.readerSchema",
    ),
    (
        "merge without keys",
        |v| v["spec"]["sink"]["delta"]["mode"] = json!("merge"),
        "spec.sink.delta.merge",
    ),
    (
        "merge settings in append mode",
        |v| v["spec"]["sink"]["delta"]["merge"] = json!({"keys": ["id"]}),
        "spec.sink.delta.mode",
    ),
    (
        "timestamp start without timestamp",
        |v| v["spec"]["source"]["kafka"]["startingOffsets"] = json!("timestamp"),
        "spec.source.kafka.startingTimestamp",
    ),
    (
        "offsets start without offsets",
        |v| v["spec"]["source"]["kafka"]["startingOffsets"] = json!("offsets"),
        "spec.source.kafka.startingPartitionOffsets",
    ),
    (
        "sasl protocol without sasl",
        |v| v["spec"]["source"]["kafka"]["security"] = json!({"protocol": "SASL_SSL"}),
        "spec.source.kafka.security.sasl",
    ),
    (
        "sasl with plaintext",
        |v| v["spec"]["source"]["kafka"]["security"] = json!({"protocol": "PLAINTEXT", "sasl": {"mechanism": "PLAIN", "usernameSecretRef": {"name": "s", "key": "u"}, "passwordSecretRef": {"name": "s", "key": "p"}}}),
        "spec.source.kafka.security.protocol",
    ),
    (
        "tls without tls protocol",
        |v| v["spec"]["source"]["kafka"]["security"] = json!({"protocol": "PLAINTEXT", "tls": {"caSecretRef": {"name": "s", "key": "ca.crt"}}}),
        "spec.source.kafka.security.protocol",
    ),
    (
        "password in properties",
        |v| v["spec"]["source"]["kafka"]["properties"] = json!({"sasl.password": "hunter2"}),
        "spec.source.kafka.properties",
    ),
    (
        "managed property",
        |v| v["spec"]["source"]["kafka"]["properties"] = json!({"enable.auto.commit": "true"}),
        "spec.source.kafka.properties",
    ),
    (
        "isolation level in properties",
        |v| {
            v["spec"]["source"]["kafka"]["properties"] =
                json!({"isolation.level": "read_uncommitted"})
        },
        "spec.source.kafka.properties",
    ),
    (
        "cooperative-sticky assignment",
        |v| {
            v["spec"]["source"]["kafka"]["properties"] =
                json!({"partition.assignment.strategy": "cooperative-sticky"})
        },
        "spec.source.kafka.properties",
    ),
    (
        "cooperative-sticky among strategies",
        |v| {
            v["spec"]["source"]["kafka"]["properties"] =
                json!({"partition.assignment.strategy": "range,cooperative-sticky"})
        },
        "spec.source.kafka.properties",
    ),
    (
        "the consumer group protocol",
        |v| v["spec"]["source"]["kafka"]["properties"] = json!({"group.protocol": "consumer"}),
        "spec.source.kafka.properties",
    ),
    (
        "dead letter without destination",
        |v| v["spec"]["errors"] = json!({"onBadRecord": "deadLetter"}),
        "spec.errors.deadLetter",
    ),
    (
        "dead letter to two places",
        |v| v["spec"]["errors"] = json!({"onBadRecord": "deadLetter", "deadLetter": {"kafka": {"topic": "dlq"}, "delta": {"uri": "s3://lake/dlq"}}}),
        "spec.errors.deadLetter",
    ),
    (
        "interval and availableNow",
        |v| v["spec"]["trigger"] = json!({"interval": "5s", "availableNow": true}),
        "spec.trigger",
    ),
    (
        "http endpoint not allowed",
        |v| v["spec"]["storage"]["endpoint"] = json!("http://127.0.0.1:9000"),
        "spec.storage.allowHttp",
    ),
    (
        "secret in storage options",
        |v| v["spec"]["storage"]["options"] = json!({"aws_secret_access_key": "x"}),
        "spec.storage.options",
    ),
    (
        "maintenance on parquet",
        |v| {
            v["spec"]["sink"] = json!({"parquet": {"uri": "s3://lake/p"}});
            v["spec"]["maintenance"] = json!({"optimize": {"schedule": "0 * * * *"}});
        },
        "spec.maintenance",
    ),
    (
        "short vacuum retention",
        |v| {
            v["spec"]["maintenance"] =
                json!({"vacuum": {"schedule": "0 3 * * *", "retention": "24h"}})
        },
        "spec.maintenance.vacuum.retention",
    ),
];

fn rust_problems(v: &Value) -> Vec<(String, String)> {
    let text = serde_yaml::to_string(v).unwrap();
    let p = manifest::parse(&text).unwrap_or_else(|e| panic!("parse: {e}"));
    match validate::validate(&p.spec) {
        Ok(()) => vec![],
        Err(problems) => problems
            .0
            .into_iter()
            .map(|p| (p.path, p.message))
            .collect(),
    }
}

fn cel_problems(schema: &Value, v: &Value) -> Vec<(String, String)> {
    match Validator::new().validate(schema, v, None) {
        Ok(()) => vec![],
        Err(errors) => errors
            .iter()
            .map(|e| (e.field_path.clone(), e.message.clone()))
            .collect(),
    }
}

#[test]
fn base_and_samples_are_valid_for_both() {
    let schema = crd::openapi_schema().unwrap();
    assert_eq!(rust_problems(&base()), vec![]);
    assert_eq!(cel_problems(&schema, &base()), vec![]);
    let samples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/samples");
    let mut n = 0;
    for entry in std::fs::read_dir(samples).unwrap() {
        let path = entry.unwrap().path();
        let v: Value = serde_yaml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(rust_problems(&v), vec![], "{}", path.display());
        assert_eq!(cel_problems(&schema, &v), vec![], "{}", path.display());
        n += 1;
    }
    assert!(n >= 3, "expected the three samples, found {n}");
}

#[test]
fn invalid_manifests_fail_rust_and_cel_at_the_same_path() {
    assert!(CASES.len() >= 12);
    let schema = crd::openapi_schema().unwrap();
    let mut failures = vec![];
    for (case, mutate, path) in CASES {
        let mut v = base();
        mutate(&mut v);
        let rust = rust_problems(&v);
        let cel = cel_problems(&schema, &v);
        let rust_msg = rust.iter().find(|(p, _)| p == path).map(|(_, m)| m.clone());
        let cel_msg = cel.iter().find(|(p, _)| p == path).map(|(_, m)| m.clone());
        match (rust_msg, cel_msg) {
            (Some(r), Some(c)) if r == c => {}
            (r, c) => failures.push(format!(
                "{case}: expected {path}\n  rust: {rust:?} ({r:?})\n  cel: {cel:?} ({c:?})"
            )),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_rule_is_in_the_crd() {
    fn collect(v: &Value, out: &mut Vec<(String, String)>) {
        match v {
            Value::Object(m) => {
                if let Some(Value::Array(rules)) = m.get("x-kubernetes-validations") {
                    for r in rules {
                        out.push((
                            r["rule"].as_str().unwrap().to_string(),
                            r["message"].as_str().unwrap().to_string(),
                        ));
                    }
                }
                m.values().for_each(|x| collect(x, out));
            }
            Value::Array(a) => a.iter().for_each(|x| collect(x, out)),
            _ => {}
        }
    }
    let mut found = vec![];
    collect(&crd::openapi_schema().unwrap(), &mut found);
    for r in spillway_api::rules::ALL {
        assert!(
            found.contains(&(r.rule.to_string(), r.message.to_string())),
            "missing rule {}",
            r.rule
        );
    }
    assert_eq!(found.len(), spillway_api::rules::ALL.len());
}

#[test]
fn schema_constraints_are_checked_in_rust_too() {
    let cases: &[(Mutation, &str)] = &[
        (|v| v["spec"]["replicas"] = json!(-1), "spec.replicas"),
        (
            |v| v["spec"]["trigger"] = json!({"interval": "5 seconds"}),
            "spec.trigger.interval",
        ),
        (
            |v| v["spec"]["source"]["kafka"]["maxRecordsPerBatch"] = json!(0),
            "spec.source.kafka.maxRecordsPerBatch",
        ),
        (
            |v| v["spec"]["sink"]["delta"]["uri"] = json!("gs://bucket/t"),
            "spec.sink.delta.uri",
        ),
        (
            |v| v["spec"]["source"]["kafka"]["startingTimestamp"] = json!("yesterday"),
            "spec.source.kafka.startingTimestamp",
        ),
    ];
    for (mutate, path) in cases {
        let mut v = base();
        mutate(&mut v);
        let problems = rust_problems(&v);
        assert!(
            problems.iter().any(|(p, _)| p == path),
            "{path}: {problems:?}"
        );
    }
}

#[test]
fn every_rule_is_documented() {
    let doc = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/api.md"),
    )
    .unwrap();
    for r in spillway_api::rules::ALL {
        assert!(
            doc.contains(&format!("| {} |", r.message)),
            "docs/api.md lacks the rule message {:?}",
            r.message
        );
    }
}
