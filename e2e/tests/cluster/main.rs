//! Cluster mode on a real Kubernetes control plane: the chart and pipelines driven with
//! `helm` and `kubectl` exactly as a user would.
//!
//! `e2e/scripts/k8s.sh start` runs etcd, kube-apiserver and kube-controller-manager on
//! loopback and exports `SPILLWAY_E2E_KUBECONFIG` (an admin kubeconfig). There is no kubelet
//! here: the test runs [`spillway_e2e::kubelet`], a stand-in that binds the pods to its Node
//! and runs each as a local process of the built `spillway` / `spillway-operator` binary,
//! with the pod's args, env, volumes and ServiceAccount token, on its own 127.0.0.N address,
//! probing it there. The operator thus authenticates as the chart's ServiceAccount and the
//! chart's RBAC is what the API server enforces.
//!
//! The scenario: `helm install` (CRD, RBAC, operator Deployment from the chart) → a Secret
//! with the S3 credentials → a pipeline into a Delta table on moto, reading Apache Kafka →
//! workers Ready through their own probes, phase Running, `status.progress` from their
//! `/progress`, `kubectl get sp` columns, every offset once (read back with Python
//! `deltalake`) → scale to 2 → suspend and resume → an `availableNow` pipeline as a Job to
//! `Completed` → a child name taken by someone else's ConfigMap → delete (children
//! garbage-collected by the controller manager).
//!
//! In CI (`CI` set) a missing `SPILLWAY_E2E_KUBECONFIG` fails the test; elsewhere it prints
//! one `cluster e2e SKIPPED: …` line.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use spillway_e2e::kubelet::{Kubelet, KubeletOptions};

/// The one line printed when no cluster is configured outside CI.
const SKIPPED: &str = "cluster e2e SKIPPED: SPILLWAY_E2E_KUBECONFIG is not set (start one with `bash e2e/scripts/k8s.sh start`)";
const RELEASE: &str = "spillway-e2e";
const PIPELINE: &str = "e2e-events";
const CRD: &str = "streamingpipelines.spillway.dev";
/// The image the chart and the pipelines name; the kubelet stand-in runs local binaries.
const IMAGE: &str = "spillway-dev/spillway:0.1.0";

/// kubectl and helm against the configured cluster.
struct Cluster {
    kubeconfig: PathBuf,
    namespace: String,
    /// The release's namespace (the operator's).
    operator_ns: String,
    /// Whether this test installed the CRD (then it removes it again).
    installed_crd: bool,
}

impl Cluster {
    fn command(&self, tool: &str, args: &[&str]) -> Command {
        let mut c = Command::new(tool);
        c.args(args).env("KUBECONFIG", &self.kubeconfig);
        c
    }

    /// Runs a tool; `Err` holds its output when it fails.
    fn try_run(&self, tool: &str, args: &[&str], stdin: Option<&str>) -> Result<String, String> {
        let mut cmd = self.command(tool, args);
        cmd.stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("{tool} not runnable ({e}): run `bash e2e/scripts/install-services.sh` and source e2e/scripts/env.sh"));
        if let Some(input) = stdin {
            child
                .stdin
                .take()
                .unwrap()
                .write_all(input.as_bytes())
                .unwrap();
        }
        let out = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        if out.status.success() {
            Ok(stdout)
        } else {
            Err(format!(
                "{tool} {args:?} failed:\n{stdout}{}",
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    }

    fn run(&self, tool: &str, args: &[&str]) -> String {
        self.try_run(tool, args, None)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    fn kubectl(&self, args: &[&str]) -> String {
        let mut all = vec!["--namespace", self.namespace.as_str()];
        all.extend(args);
        self.run("kubectl", &all)
    }

    fn apply(&self, manifest: &str) {
        self.try_run(
            "kubectl",
            &["--namespace", &self.namespace, "apply", "-f", "-"],
            Some(manifest),
        )
        .unwrap_or_else(|e| panic!("{e}\n--- manifest ---\n{manifest}"));
    }

    /// The pipeline as JSON, or `None` once it is gone.
    fn pipeline(&self, name: &str) -> Option<Value> {
        self.try_run(
            "kubectl",
            &[
                "--namespace",
                &self.namespace,
                "get",
                "streamingpipeline",
                name,
                "-o",
                "json",
                "--ignore-not-found",
            ],
            None,
        )
        .ok()
        .filter(|s| !s.trim().is_empty())
        .map(|s| serde_json::from_str(&s).unwrap())
    }

    /// Polls `f` every 2 s until it returns `Some`, or fails after `timeout` showing what the
    /// cluster holds.
    fn wait_for<T>(&self, what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(v) = f() {
                return v;
            }
            if Instant::now() > deadline {
                let state = self
                    .try_run(
                        "kubectl",
                        &[
                            "--namespace",
                            &self.namespace,
                            "get",
                            "streamingpipelines,deployments,jobs,pods,events",
                            "-o",
                            "wide",
                        ],
                        None,
                    )
                    .unwrap_or_else(|e| e);
                let pipeline = self.pipeline(PIPELINE).map(|p| p["status"].to_string());
                panic!(
                    "timed out after {timeout:?} waiting for {what}\nstatus: {pipeline:?}\n{state}"
                );
            }
            std::thread::sleep(Duration::from_secs(2));
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self.try_run(
            "helm",
            &[
                "uninstall",
                RELEASE,
                "--namespace",
                &self.operator_ns,
                "--wait",
            ],
            None,
        );
        for ns in [self.namespace.clone(), self.operator_ns.clone()] {
            let _ = self.try_run(
                "kubectl",
                &["delete", "namespace", &ns, "--wait=true", "--timeout=120s"],
                None,
            );
        }
        if self.installed_crd {
            let _ = self.try_run(
                "kubectl",
                &["delete", "crd", CRD, "--ignore-not-found"],
                None,
            );
        }
        println!(
            "cluster e2e: cleaned up namespaces {} and {}",
            self.namespace, self.operator_ns
        );
    }
}

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `(repository, tag)` of an image reference (a registry port is not a tag).
fn split_image(image: &str) -> (&str, &str) {
    match image.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => (repo, tag),
        _ => (image, "latest"),
    }
}

fn pipeline_manifest(namespace: &str, name: &str, topic: &str, extra: &str) -> String {
    let schema = std::fs::read_to_string(repo_root().join("config/schemas/hsutest.avsc"))
        .unwrap()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    let bootstrap = spillway_e2e::kafka_bootstrap();
    let endpoint = spillway_e2e::s3_endpoint();
    let bucket = spillway_e2e::s3_bucket();
    format!(
        r#"apiVersion: spillway.dev/v1alpha1
kind: StreamingPipeline
metadata:
  name: {name}
  namespace: {namespace}
spec:
  replicas: 1
  source:
    kafka:
      bootstrapServers: "{bootstrap}"
      topics: [{topic}]
      startingOffsets: earliest
      properties:
        session.timeout.ms: "10000"
  format:
    avro:
      encoding: raw
      writerSchema:
        inline: '{schema}'
  transform:
    metadataColumns: [partition, offset, timestamp]
  sink:
    delta:
      uri: s3://{bucket}/{namespace}/{name}/table
  checkpoint:
    uri: s3://{bucket}/{namespace}/{name}/_checkpoint
  storage:
    region: us-east-1
    endpoint: "{endpoint}"
    allowHttp: true
    pathStyle: true
    credentialsSecretRef:
      accessKeyId: {{name: s3, key: id}}
      secretAccessKey: {{name: s3, key: key}}
  trigger:
    interval: 2s
  errors:
    onBadRecord: skip
  worker:
    image: "{IMAGE}"
    imagePullPolicy: IfNotPresent
{extra}"#
    )
}

/// A pod that runs `spillway produce` once, under the restricted profile.
fn producer_manifest(name: &str, topic: &str, count: u64, seed: u64) -> String {
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

/// (rows, distinct (partition, offset)) of a Delta table on moto, read with Python
/// `deltalake`.
fn table_counts(uri: &str) -> (u64, u64) {
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
    let out = Command::new(spillway_e2e::python())
        .args(["-c", script, uri, &spillway_e2e::s3_endpoint()])
        .output()
        .unwrap();
    if !out.status.success() {
        return (0, 0);
    }
    let v: (u64, u64) = serde_json::from_slice(&out.stdout).unwrap_or((0, 0));
    v
}

fn binaries_dir() -> PathBuf {
    // target/<profile>/deps/cluster-<hash> → target/<profile>
    let exe = std::env::current_exe().unwrap();
    exe.parent().unwrap().parent().unwrap().to_path_buf()
}

fn kube_client(rt: &tokio::runtime::Runtime, kubeconfig: &Path) -> kube::Client {
    spillway_e2e::kubelet::install_crypto_provider();
    rt.block_on(async {
        let kc = kube::config::Kubeconfig::read_from(kubeconfig).unwrap();
        let config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
            .await
            .unwrap();
        kube::Client::try_from(config).unwrap()
    })
}

/// The cluster's CA (from the admin kubeconfig), for the ServiceAccount token volumes.
fn write_ca(kubeconfig: &Path, dir: &Path) -> PathBuf {
    let kc: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(kubeconfig).unwrap()).unwrap();
    let cluster = &kc["clusters"][0]["cluster"];
    let ca = dir.join("ca.crt");
    if let Some(data) = cluster["certificate-authority-data"].as_str() {
        use base64::Engine;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(data)
            .unwrap();
        std::fs::write(&ca, bytes).unwrap();
    } else {
        let file = cluster["certificate-authority"].as_str().unwrap();
        std::fs::copy(file, &ca).unwrap();
    }
    ca
}

fn api_host_port(kubeconfig: &Path) -> (String, u16) {
    let kc: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(kubeconfig).unwrap()).unwrap();
    let server = kc["clusters"][0]["cluster"]["server"].as_str().unwrap();
    let hostport = server.trim_start_matches("https://").trim_end_matches('/');
    let (h, p) = hostport.rsplit_once(':').unwrap();
    (h.to_string(), p.parse().unwrap())
}

fn condition<'a>(status: &'a Value, type_: &str) -> Option<&'a Value> {
    status["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
}

#[test]
fn chart_and_pipeline_lifecycle_on_a_real_cluster() {
    let Some(kubeconfig) = std::env::var_os("SPILLWAY_E2E_KUBECONFIG") else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must run the cluster e2e: SPILLWAY_E2E_KUBECONFIG is not set (e2e/scripts/test-all.sh starts the control plane)"
        );
        println!("{SKIPPED}");
        return;
    };
    let kubeconfig = PathBuf::from(kubeconfig);
    assert!(
        kubeconfig.is_file(),
        "SPILLWAY_E2E_KUBECONFIG={} is not a file",
        kubeconfig.display()
    );
    spillway_e2e::require("kafka", &spillway_e2e::kafka_bootstrap()).unwrap();
    spillway_e2e::require(
        "moto (s3)",
        &spillway_e2e::host_port(&spillway_e2e::s3_endpoint()),
    )
    .unwrap();
    let namespace = spillway_e2e::unique("e2e");
    let operator_ns = spillway_e2e::unique("spillway-system");
    let topic = spillway_e2e::unique("e2e");

    // The kubelet stand-in, running the pods as local processes.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let client = kube_client(&rt, &kubeconfig);
    let root = std::env::temp_dir().join(spillway_e2e::unique("spillway-kubelet"));
    std::fs::create_dir_all(&root).unwrap();
    let (api_host, api_port) = api_host_port(&kubeconfig);
    let bin = binaries_dir();
    let kubelet = rt
        .block_on(Kubelet::start(
            client,
            KubeletOptions {
                node: "spillway-e2e-node".into(),
                ca_file: write_ca(&kubeconfig, &root),
                root: root.clone(),
                binaries: BTreeMap::from([
                    ("spillway".to_string(), bin.join("spillway")),
                    (
                        "spillway-operator".to_string(),
                        bin.join("spillway-operator"),
                    ),
                ]),
                entrypoint: "spillway".into(),
                api_host,
                api_port,
                restart_backoff: Duration::from_secs(2),
            },
        ))
        .unwrap();

    let mut cluster = Cluster {
        kubeconfig,
        namespace: namespace.clone(),
        operator_ns: operator_ns.clone(),
        installed_crd: false,
    };
    cluster.run("kubectl", &["version"]);
    cluster.installed_crd = cluster
        .run(
            "kubectl",
            &["get", "crd", CRD, "--ignore-not-found", "-o", "name"],
        )
        .trim()
        .is_empty();

    // Namespaces enforcing Pod Security "restricted": the operator's and the workers' pods
    // are admitted only if they meet it.
    for ns in [&namespace, &operator_ns] {
        cluster.run("kubectl", &["create", "namespace", ns]);
        cluster.run(
            "kubectl",
            &[
                "label",
                "namespace",
                ns,
                "pod-security.kubernetes.io/enforce=restricted",
            ],
        );
    }

    // The chart (CRD, ClusterRole, operator Deployment), watching every namespace.
    let chart = repo_root().join("charts/spillway");
    let (repository, tag) = split_image(IMAGE);
    cluster.run(
        "helm",
        &[
            "install",
            RELEASE,
            chart.to_str().unwrap(),
            "--namespace",
            &operator_ns,
            "--set",
            &format!("image.repository={repository}"),
            "--set",
            &format!("image.tag={tag}"),
            "--set",
            "operator.progressInterval=3s",
            "--wait",
            "--timeout",
            "5m",
        ],
    );
    cluster.run(
        "kubectl",
        &[
            "--namespace",
            &operator_ns,
            "rollout",
            "status",
            &format!("deployment/{RELEASE}"),
            "--timeout=180s",
        ],
    );

    // The S3 credentials as a real Secret; the pipeline only references it.
    cluster.kubectl(&[
        "create",
        "secret",
        "generic",
        "s3",
        "--from-literal=id=test",
        "--from-literal=key=test",
    ]);

    // Records to read, produced by a pod.
    cluster.apply(&producer_manifest("producer", &topic, 20_000, 1));
    cluster.kubectl(&[
        "wait",
        "pod/producer",
        "--for=jsonpath={.status.phase}=Succeeded",
        "--timeout=300s",
    ]);

    // A child name taken by someone else: the pipeline leaves it alone and says why.
    cluster.kubectl(&[
        "create",
        "configmap",
        &format!("{PIPELINE}-pipeline"),
        "--from-literal=theirs=yes",
    ]);
    cluster.apply(&pipeline_manifest(&namespace, PIPELINE, &topic, ""));
    let status = cluster.wait_for("condition ChildNotOwned", Duration::from_secs(120), || {
        let p = cluster.pipeline(PIPELINE)?;
        let ready = condition(&p["status"], "Ready")?;
        (ready["reason"] == "ChildNotOwned").then(|| p["status"].clone())
    });
    assert_eq!(status["phase"], "Failed", "{status}");
    let theirs = cluster.kubectl(&[
        "get",
        "configmap",
        &format!("{PIPELINE}-pipeline"),
        "-o",
        "jsonpath={.data.theirs}",
    ]);
    assert_eq!(theirs.trim(), "yes", "the foreign ConfigMap is untouched");
    assert!(
        cluster
            .kubectl(&[
                "get",
                "deployment",
                PIPELINE,
                "--ignore-not-found",
                "-o",
                "name"
            ])
            .trim()
            .is_empty(),
        "nothing applied while a child name is taken"
    );
    cluster.kubectl(&["delete", "configmap", &format!("{PIPELINE}-pipeline")]);

    // The pipeline: workers Ready through their own probes, Running, progress in status.
    let status = cluster.wait_for(
        "phase Running with status.progress",
        Duration::from_secs(300),
        || {
            let p = cluster.pipeline(PIPELINE)?;
            let s = &p["status"];
            let progress = s["progress"].as_object()?;
            (s["phase"] == "Running" && !progress.is_empty()).then(|| s.clone())
        },
    );
    assert!(status["progress"]["batchId"].is_i64(), "{status}");
    assert_eq!(
        condition(&status, "Ready").unwrap()["status"],
        "True",
        "{status}"
    );
    let table = format!(
        "s3://{}/{namespace}/{PIPELINE}/table",
        spillway_e2e::s3_bucket()
    );
    cluster.wait_for("20000 rows, each once", Duration::from_secs(300), || {
        (table_counts(&table) == (20_000, 20_000)).then_some(())
    });
    let listing = cluster.kubectl(&["get", "sp", PIPELINE]);
    for column in ["PHASE", "READY", "LAG", "ROWS/S", "AGE", "Running"] {
        assert!(
            listing.contains(column),
            "kubectl get sp lacks {column}:\n{listing}"
        );
    }
    let children = cluster.kubectl(&[
        "get",
        "deployments,services,configmaps,poddisruptionbudgets",
        "-l",
        &format!("app.kubernetes.io/instance={PIPELINE}"),
        "-o",
        "name",
    ]);
    for child in [
        format!("deployment.apps/{PIPELINE}"),
        format!("service/{PIPELINE}"),
        format!("configmap/{PIPELINE}-pipeline"),
        format!("poddisruptionbudget.policy/{PIPELINE}"),
    ] {
        assert!(children.contains(&child), "missing {child} in\n{children}");
    }

    // Scale through the scale subresource: a second worker joins the group; more records
    // land exactly once.
    cluster.kubectl(&["scale", "streamingpipeline", PIPELINE, "--replicas=2"]);
    cluster.wait_for("2 ready workers", Duration::from_secs(300), || {
        let p = cluster.pipeline(PIPELINE)?;
        (p["spec"]["replicas"] == 2 && p["status"]["readyReplicas"] == 2).then_some(())
    });
    cluster.apply(&producer_manifest("producer-2", &topic, 10_000, 2));
    cluster.wait_for("30000 rows, each once", Duration::from_secs(300), || {
        (table_counts(&table) == (30_000, 30_000)).then_some(())
    });

    // Suspend: no worker pod, no budget, phase Suspended, progress kept; then resume.
    cluster.kubectl(&[
        "patch",
        "streamingpipeline",
        PIPELINE,
        "--type=merge",
        "-p",
        r#"{"spec":{"suspend":true}}"#,
    ]);
    let suspended = cluster.wait_for(
        "phase Suspended, no worker pod",
        Duration::from_secs(180),
        || {
            let p = cluster.pipeline(PIPELINE)?;
            let pods = cluster.kubectl(&[
                "get",
                "pods",
                "-l",
                &format!("app.kubernetes.io/instance={PIPELINE}"),
                "-o",
                "name",
            ]);
            (p["status"]["phase"] == "Suspended" && pods.trim().is_empty())
                .then(|| p["status"].clone())
        },
    );
    assert!(
        suspended["progress"]["batchId"].is_i64(),
        "progress kept: {suspended}"
    );
    cluster.kubectl(&[
        "patch",
        "streamingpipeline",
        PIPELINE,
        "--type=merge",
        "-p",
        r#"{"spec":{"suspend":false}}"#,
    ]);
    cluster.wait_for("Running again", Duration::from_secs(300), || {
        let p = cluster.pipeline(PIPELINE)?;
        (p["status"]["phase"] == "Running" && p["status"]["readyReplicas"] == 2).then_some(())
    });
    assert_eq!(
        table_counts(&table),
        (30_000, 30_000),
        "resuming duplicates nothing"
    );

    // availableNow: a Job that runs to Completed and is not restarted.
    let once = "e2e-once";
    cluster.apply(
        &pipeline_manifest(
            &namespace,
            once,
            &topic,
            "  # drain what is there, then stop\n",
        )
        .replace(
            "  trigger:\n    interval: 2s\n",
            "  trigger:\n    availableNow: true\n",
        ),
    );
    let done = cluster.wait_for(
        "the availableNow pipeline Completed",
        Duration::from_secs(300),
        || {
            let p = cluster.pipeline(once)?;
            (p["status"]["phase"] == "Completed").then(|| p["status"].clone())
        },
    );
    assert_eq!(
        condition(&done, "Ready").unwrap()["reason"],
        "Completed",
        "{done}"
    );
    let job = cluster.kubectl(&["get", "job", once, "-o", "json"]);
    let job: Value = serde_json::from_str(&job).unwrap();
    assert_eq!(job["status"]["succeeded"], 1, "{job}");
    assert!(job["status"]["failed"].is_null(), "not restarted: {job}");
    assert!(
        cluster
            .kubectl(&[
                "get",
                "deployment",
                once,
                "--ignore-not-found",
                "-o",
                "name"
            ])
            .trim()
            .is_empty(),
        "an availableNow pipeline has no Deployment"
    );
    let once_table = format!(
        "s3://{}/{namespace}/{once}/table",
        spillway_e2e::s3_bucket()
    );
    assert_eq!(table_counts(&once_table), (30_000, 30_000));

    // Delete: the children go with their owner (the controller manager's garbage collector).
    for name in [PIPELINE, once] {
        cluster.kubectl(&[
            "delete",
            "streamingpipeline",
            name,
            "--wait=true",
            "--timeout=120s",
        ]);
    }
    cluster.wait_for("the children deleted", Duration::from_secs(180), || {
        cluster
            .kubectl(&[
                "get",
                "deployments,jobs,services,configmaps,pods",
                "-l",
                "app.kubernetes.io/managed-by=spillway-operator",
                "-o",
                "name",
            ])
            .trim()
            .is_empty()
            .then_some(())
    });
    drop(cluster);
    rt.block_on(kubelet.shutdown());
    println!("cluster e2e passed in namespace {namespace}");
}

#[test]
fn image_references_split_into_repository_and_tag() {
    assert_eq!(
        split_image("spillway-dev/spillway:0.1.0"),
        ("spillway-dev/spillway", "0.1.0")
    );
    assert_eq!(
        split_image("registry.example.com:5000/spillway"),
        ("registry.example.com:5000/spillway", "latest")
    );
    assert_eq!(
        split_image("registry.example.com:5000/spillway:dev"),
        ("registry.example.com:5000/spillway", "dev")
    );
}

/// The manifests this file applies and the one docs/install.md shows parse and pass the same
/// checks as `spillway validate` (the cluster test itself cannot run here).
#[test]
fn the_cluster_pipeline_and_the_install_guides_example_are_valid() {
    use spillway_api::{manifest, validate};
    let check = |what: &str, text: &str| {
        let p = manifest::parse(text).unwrap_or_else(|e| panic!("{what}: {e}\n{text}"));
        validate::validate(&p.spec).unwrap_or_else(|e| panic!("{what}: {e:?}\n{text}"));
        p
    };
    let p = check(
        "cluster pipeline",
        &pipeline_manifest("spillway-e2e-1", PIPELINE, "e2e-1", ""),
    );
    assert_eq!(p.spec.replicas, 1);
    assert!(!p.spec.suspend);

    let guide = std::fs::read_to_string(repo_root().join("docs/install.md")).unwrap();
    let example = guide
        .split("```yaml\n")
        .nth(1)
        .and_then(|s| s.split("```").next())
        .expect("a yaml example in docs/install.md");
    let p = check("docs/install.md", example);
    assert_eq!(p.metadata.name.as_deref(), Some("hsutest-events"));

    let producer: serde_yaml::Value =
        serde_yaml::from_str(&producer_manifest("producer", "e2e-1", 10, 1)).unwrap();
    let c = &producer["spec"]["containers"][0];
    assert_eq!(c["args"][0], "produce");
    assert_eq!(c["securityContext"]["capabilities"]["drop"][0], "ALL");
}
