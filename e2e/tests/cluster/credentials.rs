//! Object-storage credentials as users configure them without `credentialsSecretRef`: the
//! standard AWS environment variables in the worker pod, from a Secret through
//! `spec.worker.env` `secretKeyRef`s. One pipeline writes a Delta table with `spec.storage`
//! naming only the endpoint; the other has no `spec.storage` at all and takes endpoint and
//! region from the environment too, writing a Parquet dataset. Both keep their checkpoint on
//! the same store, and both run to `Completed` with every offset once.

use std::time::Duration;

use serde_json::{Value, json};

use crate::fixtures::{self, Counts, condition, pipeline, table_counts, table_uri};
use crate::harness::{self, Suite};

const DELTA: &str = "e2e-env-delta";
const PARQUET: &str = "e2e-env-parquet";
const SECRET: &str = "aws";
const RECORDS: u64 = 4_000;

fn secret_env(name: &str, key: &str) -> Value {
    json!({"name": name, "valueFrom": {"secretKeyRef": {"name": SECRET, "key": key}}})
}

/// `spec.worker.env`: the AWS keys from the Secret, and `extra` plain variables.
fn worker(extra: &[(&str, String)]) -> Value {
    let mut env = vec![
        secret_env("AWS_ACCESS_KEY_ID", "access-key-id"),
        secret_env("AWS_SECRET_ACCESS_KEY", "secret-access-key"),
    ];
    env.extend(extra.iter().map(|(k, v)| json!({"name": k, "value": v})));
    json!({"image": harness::IMAGE, "imagePullPolicy": "IfNotPresent", "env": env})
}

/// Delta, `spec.storage` without credentials: the keys come from the environment.
pub fn delta_manifest(namespace: &str, topic: &str) -> Value {
    let mut p = pipeline(namespace, DELTA, topic);
    let spec = &mut p["spec"];
    spec["storage"]
        .as_object_mut()
        .unwrap()
        .remove("credentialsSecretRef");
    spec["trigger"] = json!({"availableNow": true});
    spec["worker"] = worker(&[]);
    p
}

/// Parquet, no `spec.storage`: keys, endpoint and region all from the environment.
pub fn parquet_manifest(namespace: &str, topic: &str) -> Value {
    let mut p = pipeline(namespace, PARQUET, topic);
    let spec = p["spec"].as_object_mut().unwrap();
    spec.remove("storage");
    spec.insert(
        "sink".into(),
        json!({"parquet": {"uri": parquet_uri(namespace)}}),
    );
    spec.insert("trigger".into(), json!({"availableNow": true}));
    spec.insert(
        "worker".into(),
        worker(&[
            ("AWS_ENDPOINT_URL", spillway_e2e::s3_endpoint()),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_ALLOW_HTTP", "true".into()),
        ]),
    );
    p
}

fn parquet_uri(namespace: &str) -> String {
    format!(
        "s3://{}/{namespace}/{PARQUET}/dataset",
        spillway_e2e::s3_bucket()
    )
}

fn checkpoint_uri(namespace: &str, name: &str) -> String {
    format!(
        "s3://{}/{namespace}/{name}/_checkpoint",
        spillway_e2e::s3_bucket()
    )
}

/// [`Counts`] of a Parquet dataset on moto (every `.parquet` object under `uri`), read
/// with boto3 and pyarrow.
fn parquet_counts(uri: &str) -> Counts {
    let script = r#"
import io, json, os, sys
import boto3, pyarrow.parquet as pq
bucket, _, prefix = sys.argv[1][len("s3://"):].partition("/")
s3 = boto3.client("s3", endpoint_url=sys.argv[2], region_name="us-east-1",
                  aws_access_key_id="test", aws_secret_access_key="test")
rows, pairs = 0, set()
for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix.rstrip("/") + "/"):
    for o in page.get("Contents", []):
        if not o["Key"].endswith(".parquet"):
            continue
        body = s3.get_object(Bucket=bucket, Key=o["Key"])["Body"].read()
        t = pq.read_table(io.BytesIO(body), columns=["_partition", "_offset"])
        rows += t.num_rows
        pairs.update(zip(t.column("_partition").to_pylist(), t.column("_offset").to_pylist()))
print(json.dumps([rows, len(pairs)]), flush=True)
os._exit(0)
"#;
    fixtures::counts(fixtures::python_json(
        script,
        &[uri, &spillway_e2e::s3_endpoint()],
    ))
}

/// How many objects there are under an `s3://bucket/prefix` on moto.
fn object_count(uri: &str) -> u64 {
    let script = r#"
import json, os, sys
import boto3
bucket, _, prefix = sys.argv[1][len("s3://"):].partition("/")
s3 = boto3.client("s3", endpoint_url=sys.argv[2], region_name="us-east-1",
                  aws_access_key_id="test", aws_secret_access_key="test")
n = sum(len(p.get("Contents", [])) for p in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix.rstrip("/") + "/"))
print(json.dumps(n), flush=True)
os._exit(0)
"#;
    fixtures::python_json(script, &[uri, &spillway_e2e::s3_endpoint()])
        .and_then(|v| v.as_u64())
        .unwrap_or(0)
}

#[test]
fn object_store_credentials_from_the_pod_environment() {
    let Some(kubeconfig) = harness::kubeconfig() else {
        return;
    };
    harness::require_services();
    let mut suite = Suite::start(kubeconfig, "creds", 20);
    suite.install_operator(&[]);
    let namespace = suite.namespace.clone();
    suite.kubectl(&[
        "create",
        "secret",
        "generic",
        SECRET,
        "--from-literal=access-key-id=test",
        "--from-literal=secret-access-key=test",
    ]);
    let topic = spillway_e2e::unique("env");
    suite.produce(&topic, RECORDS, 5, 2);
    suite.apply_json(&delta_manifest(&namespace, &topic));
    suite.apply_json(&parquet_manifest(&namespace, &topic));

    for name in [DELTA, PARQUET] {
        let done = suite.wait_for(
            &format!("{name} Completed"),
            Duration::from_secs(300),
            || {
                let s = suite.status(name)?;
                (s["phase"] == "Completed").then_some(s)
            },
        );
        assert_eq!(
            condition(&done, "Ready").unwrap()["reason"],
            "Completed",
            "{done}"
        );
        // The keys reach the pod only as secretKeyRef env: no SPILLWAY_SECRET_* wiring.
        let job = suite.kubectl_json(&["get", "job", name]);
        let env = job["spec"]["template"]["spec"]["containers"][0]["env"]
            .as_array()
            .unwrap()
            .clone();
        let key = env
            .iter()
            .find(|e| e["name"] == "AWS_SECRET_ACCESS_KEY")
            .unwrap_or_else(|| panic!("no AWS_SECRET_ACCESS_KEY in {env:?}"));
        assert_eq!(key["valueFrom"]["secretKeyRef"]["name"], SECRET, "{key}");
        assert!(
            !env.iter().any(|e| e["name"]
                .as_str()
                .is_some_and(|n| n.starts_with("SPILLWAY_SECRET_"))),
            "{env:?}"
        );
        assert!(
            object_count(&checkpoint_uri(&namespace, name)) > 0,
            "{name} wrote its checkpoint"
        );
    }
    assert_eq!(
        table_counts(&table_uri(&namespace, DELTA)),
        Counts::once(RECORDS),
        "the Delta table"
    );
    assert_eq!(
        parquet_counts(&parquet_uri(&namespace)),
        Counts::once(RECORDS),
        "the Parquet dataset"
    );
}
