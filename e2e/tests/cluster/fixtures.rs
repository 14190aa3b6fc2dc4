//! What the cluster tests apply and how they read back what the workers wrote: the one
//! pipeline manifest they start from, a producer pod, Python readers of Delta tables on moto,
//! and an HTTP GET for loopback endpoints.

use std::process::Command;

use serde_json::{Value, json};

use crate::harness::{IMAGE, repo_root};

/// The condition of a type in a status.
pub fn condition<'a>(status: &'a Value, type_: &str) -> Option<&'a Value> {
    status["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
}

/// The HsuTestEvent writer schema on one line.
fn hsutest_schema() -> String {
    std::fs::read_to_string(repo_root().join("config/schemas/hsutest.avsc"))
        .unwrap()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// The one pipeline manifest the tests start from: raw HsuTestEvent Avro from `topic` into
/// a Delta table on moto (credentials from the Secret `s3`, keys `id` and `key`), every 2 s,
/// bad records skipped; tests change what they need.
pub fn pipeline(namespace: &str, name: &str, topic: &str) -> Value {
    let bucket = spillway_e2e::s3_bucket();
    json!({
        "apiVersion": "spillway.dev/v1alpha1",
        "kind": "StreamingPipeline",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "replicas": 1,
            "source": {"kafka": {
                "bootstrapServers": spillway_e2e::kafka_bootstrap(),
                "topics": [topic],
                "startingOffsets": "earliest",
                "properties": {"session.timeout.ms": "10000"},
            }},
            "format": {"avro": {"encoding": "raw", "writerSchema": {"inline": hsutest_schema()}}},
            "transform": {"metadataColumns": ["partition", "offset", "timestamp"]},
            "sink": {"delta": {"uri": table_uri(namespace, name)}},
            "checkpoint": {"uri": format!("s3://{bucket}/{namespace}/{name}/_checkpoint")},
            "storage": {
                "region": "us-east-1",
                "endpoint": spillway_e2e::s3_endpoint(),
                "allowHttp": true,
                "pathStyle": true,
                "credentialsSecretRef": {
                    "accessKeyId": {"name": "s3", "key": "id"},
                    "secretAccessKey": {"name": "s3", "key": "key"},
                },
            },
            "trigger": {"interval": "2s"},
            "errors": {"onBadRecord": "skip"},
            "worker": {"image": IMAGE, "imagePullPolicy": "IfNotPresent"},
        }
    })
}

/// The Delta table of [`pipeline`].
pub fn table_uri(namespace: &str, name: &str) -> String {
    format!(
        "s3://{}/{namespace}/{name}/table",
        spillway_e2e::s3_bucket()
    )
}

/// A pod that runs `spillway produce` once, under the restricted profile.
pub fn producer_manifest(name: &str, topic: &str, count: u64, seed: u64) -> String {
    let bootstrap = spillway_e2e::kafka_bootstrap();
    format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: {name}
  labels: {{app.kubernetes.io/name: spillway-e2e-producer}}
spec:
  restartPolicy: Never
  automountServiceAccountToken: false
  securityContext:
    runAsNonRoot: true
    runAsUser: 65532
    seccompProfile: {{type: RuntimeDefault}}
  containers:
    - name: produce
      image: "{IMAGE}"
      imagePullPolicy: IfNotPresent
      args: [produce, --bootstrap, "{bootstrap}", --topic, "{topic}", --count, "{count}", --seed, "{seed}", --partitions, "2"]
      securityContext:
        allowPrivilegeEscalation: false
        readOnlyRootFilesystem: true
        capabilities: {{drop: [ALL]}}
"#
    )
}

/// Runs a Python snippet with the venv's readers; its stdout parsed as JSON.
pub fn python_json(script: &str, args: &[&str]) -> Option<Value> {
    let out = Command::new(spillway_e2e::python())
        .args(["-c", script])
        .args(args)
        .output()
        .unwrap();
    if !out.status.success() {
        return None;
    }
    serde_json::from_slice(&out.stdout).ok()
}

/// Row and (partition, offset) counts of what a pipeline wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counts {
    /// Rows.
    pub rows: u64,
    /// Distinct `(_partition, _offset)` pairs.
    pub offsets: u64,
}

impl Counts {
    /// `n` rows, each offset once.
    pub fn once(n: u64) -> Self {
        Self {
            rows: n,
            offsets: n,
        }
    }
}

/// [`Counts`] of a Delta table on moto, read with Python `deltalake`; zero when it cannot
/// be read (yet).
pub fn table_counts(uri: &str) -> Counts {
    let script = r#"
import json, os, sys
import deltalake
opts = {"AWS_ENDPOINT_URL": sys.argv[2], "AWS_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test", "AWS_ALLOW_HTTP": "true"}
t = deltalake.DeltaTable(sys.argv[1], storage_options=opts).to_pyarrow_table(columns=["_partition", "_offset"])
pairs = set(zip(t.column("_partition").to_pylist(), t.column("_offset").to_pylist()))
print(json.dumps([t.num_rows, len(pairs)]), flush=True)
os._exit(0)
"#;
    counts(python_json(script, &[uri, &spillway_e2e::s3_endpoint()]))
}

/// [`Counts`] from a `[rows, offsets]` JSON answer (zero when there is none).
pub fn counts(v: Option<Value>) -> Counts {
    let n = |i: usize| v.as_ref().and_then(|v| v[i].as_u64()).unwrap_or(0);
    Counts {
        rows: n(0),
        offsets: n(1),
    }
}

/// `GET http://addr/path` on loopback with curl; `(status, body)`.
pub fn http_get(url: &str, query: &[(&str, &str)]) -> (u16, String) {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "--max-time", "10", "-w", "\n%{http_code}", "--get"]);
    for (k, v) in query {
        cmd.args(["--data-urlencode", &format!("{k}={v}")]);
    }
    let out = cmd.arg(url).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_string())
}
