//! Cluster mode: the chart and a pipeline on a real Kubernetes cluster (kind, k3d, …), driven
//! with `helm` and `kubectl` exactly as a user would.
//!
//! It runs when `SPILLWAY_E2E_KUBECONFIG` names a kubeconfig; otherwise it prints one
//! `cluster e2e SKIPPED: …` line and returns (this machine has no API server).
//! - `SPILLWAY_E2E_KAFKA_BOOTSTRAP` (required): a Kafka bootstrap address reachable from the
//!   cluster's pods, e.g. `kafka.kafka:9092`.
//! - `SPILLWAY_E2E_IMAGE` (default `spillway-dev/spillway:0.1.0`): the image built from the
//!   repository's `Dockerfile`, already loadable by the cluster (`kind load docker-image …`).
//!
//! The test creates its own namespace (Pod Security `restricted` enforced), installs the
//! chart there watching only that namespace, produces records with `spillway produce` in a
//! pod, applies a pipeline into a Delta table on the worker's scratch volume, waits for phase
//! `Running` with a non-empty `status.progress`, scales it to 2 workers, suspends it, deletes
//! it (its children go with it), and finally removes the release and the namespace — also
//! when an assertion fails.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The one line printed when no cluster is configured (e2e/scripts/test-all.sh prints it too).
const SKIPPED: &str =
    "cluster e2e SKIPPED: SPILLWAY_E2E_KUBECONFIG is not set (no API server on this machine)";
const RELEASE: &str = "spillway-e2e";
const PIPELINE: &str = "e2e-events";
const CRD: &str = "streamingpipelines.spillway.dev";

/// kubectl and helm against the configured cluster.
struct Cluster {
    kubeconfig: PathBuf,
    namespace: String,
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
    fn pipeline(&self) -> Option<Value> {
        self.try_run(
            "kubectl",
            &[
                "--namespace",
                &self.namespace,
                "get",
                "streamingpipeline",
                PIPELINE,
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
                            "streamingpipelines,deployments,pods,events",
                            "-o",
                            "wide",
                        ],
                        None,
                    )
                    .unwrap_or_else(|e| e);
                let pipeline = self.pipeline().map(|p| p["status"].to_string());
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
        let ns = self.namespace.clone();
        let _ = self.try_run(
            "helm",
            &["uninstall", RELEASE, "--namespace", &ns, "--wait"],
            None,
        );
        let _ = self.try_run(
            "kubectl",
            &["delete", "namespace", &ns, "--wait=true", "--timeout=120s"],
            None,
        );
        if self.installed_crd {
            let _ = self.try_run(
                "kubectl",
                &["delete", "crd", CRD, "--ignore-not-found"],
                None,
            );
        }
        println!("cluster e2e: cleaned up namespace {ns}");
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

fn pipeline_manifest(namespace: &str, bootstrap: &str, topic: &str, image: &str) -> String {
    let schema = std::fs::read_to_string(repo_root().join("config/schemas/hsutest.avsc"))
        .unwrap()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    format!(
        r#"apiVersion: spillway.dev/v1alpha1
kind: StreamingPipeline
metadata:
  name: {PIPELINE}
  namespace: {namespace}
spec:
  replicas: 1
  source:
    kafka:
      bootstrapServers: "{bootstrap}"
      topics: [{topic}]
      startingOffsets: earliest
  format:
    avro:
      encoding: raw
      writerSchema:
        inline: '{schema}'
  transform:
    metadataColumns: [partition, offset, timestamp]
  sink:
    delta:
      uri: /tmp/spillway/{PIPELINE}/table
  checkpoint:
    uri: /tmp/spillway/{PIPELINE}/_checkpoint
  trigger:
    interval: 2s
  errors:
    onBadRecord: skip
  worker:
    image: "{image}"
    imagePullPolicy: IfNotPresent
    resources:
      requests: {{cpu: 100m, memory: 256Mi}}
      limits: {{memory: 1Gi}}
"#
    )
}

/// A pod that runs `spillway produce` once, under the restricted profile.
fn producer_manifest(image: &str, bootstrap: &str, topic: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: producer
  labels: {{app.kubernetes.io/name: spillway-e2e-producer}}
spec:
  restartPolicy: OnFailure
  automountServiceAccountToken: false
  securityContext:
    runAsNonRoot: true
    runAsUser: 65532
    seccompProfile: {{type: RuntimeDefault}}
  containers:
    - name: produce
      image: "{image}"
      imagePullPolicy: IfNotPresent
      args: [produce, --bootstrap, "{bootstrap}", --topic, "{topic}", --count, "20000", --partitions, "2"]
      securityContext:
        allowPrivilegeEscalation: false
        readOnlyRootFilesystem: true
        capabilities: {{drop: [ALL]}}
"#
    )
}

#[test]
fn chart_and_pipeline_lifecycle_on_a_real_cluster() {
    let Some(kubeconfig) = std::env::var_os("SPILLWAY_E2E_KUBECONFIG") else {
        println!("{SKIPPED}");
        return;
    };
    let kubeconfig = PathBuf::from(kubeconfig);
    assert!(
        Path::new(&kubeconfig).is_file(),
        "SPILLWAY_E2E_KUBECONFIG={} is not a file",
        kubeconfig.display()
    );
    let bootstrap = std::env::var("SPILLWAY_E2E_KAFKA_BOOTSTRAP").expect(
        "SPILLWAY_E2E_KAFKA_BOOTSTRAP must name a Kafka reachable from the cluster's pods, e.g. kafka.kafka:9092",
    );
    let image = std::env::var("SPILLWAY_E2E_IMAGE")
        .unwrap_or_else(|_| "spillway-dev/spillway:0.1.0".into());
    let (repository, tag) = split_image(&image);
    let namespace = spillway_e2e::unique("spillway-e2e");
    let topic = spillway_e2e::unique("e2e");

    let mut cluster = Cluster {
        kubeconfig,
        namespace: namespace.clone(),
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

    // A namespace enforcing Pod Security "restricted": the operator's and the workers' pods
    // are admitted only if they meet it.
    cluster.run("kubectl", &["create", "namespace", &namespace]);
    cluster.run(
        "kubectl",
        &[
            "label",
            "namespace",
            &namespace,
            "pod-security.kubernetes.io/enforce=restricted",
        ],
    );

    // The chart, watching only this namespace (Roles, no ClusterRole).
    let chart = repo_root().join("charts/spillway");
    cluster.run(
        "helm",
        &[
            "install",
            RELEASE,
            chart.to_str().unwrap(),
            "--namespace",
            &namespace,
            "--set",
            &format!("watchNamespaces={{{namespace}}}"),
            "--set",
            &format!("image.repository={repository}"),
            "--set",
            &format!("image.tag={tag}"),
            "--set",
            "operator.progressInterval=5s",
            "--wait",
            "--timeout",
            "5m",
        ],
    );
    let operator = format!("deployment/{RELEASE}-spillway");
    cluster.kubectl(&["rollout", "status", &operator, "--timeout=180s"]);
    assert!(
        cluster
            .kubectl(&["get", "roles", "-o", "name"])
            .contains(&format!(
                "role.rbac.authorization.k8s.io/{RELEASE}-spillway"
            )),
        "the namespaced Role"
    );

    // Records to read.
    cluster.apply(&producer_manifest(&image, &bootstrap, &topic));
    cluster.kubectl(&[
        "wait",
        "pod/producer",
        "--for=jsonpath={.status.phase}=Succeeded",
        "--timeout=300s",
    ]);

    // The pipeline: Running, with progress in its status.
    cluster.apply(&pipeline_manifest(&namespace, &bootstrap, &topic, &image));
    let status = cluster.wait_for(
        "phase Running with status.progress",
        Duration::from_secs(300),
        || {
            let p = cluster.pipeline()?;
            let s = &p["status"];
            let progress = s["progress"].as_object()?;
            (s["phase"] == "Running" && !progress.is_empty()).then(|| s.clone())
        },
    );
    assert!(status["progress"]["batchId"].is_i64(), "{status}");
    assert!(
        status["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True"),
        "{status}"
    );
    let table = cluster.kubectl(&["get", "sp", PIPELINE]);
    for column in [
        "PHASE", "READY", "REPLICAS", "LAG", "ROWS/S", "AGE", "Running",
    ] {
        assert!(
            table.contains(column),
            "kubectl get sp lacks {column}:\n{table}"
        );
    }
    let children = cluster.kubectl(&[
        "get",
        "deployments,services,configmaps,poddisruptionbudgets,cronjobs",
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

    // Scale through the scale subresource (spec.replicas): two workers, both ready.
    cluster.kubectl(&["scale", "streamingpipeline", PIPELINE, "--replicas=2"]);
    cluster.wait_for("2 ready workers", Duration::from_secs(300), || {
        let p = cluster.pipeline()?;
        (p["spec"]["replicas"] == 2 && p["status"]["readyReplicas"] == 2).then_some(())
    });

    // Suspend (spec.suspend): no worker, no budget, phase Suspended, status kept.
    cluster.kubectl(&[
        "patch",
        "streamingpipeline",
        PIPELINE,
        "--type=merge",
        "-p",
        r#"{"spec":{"suspend":true}}"#,
    ]);
    cluster.wait_for("phase Suspended", Duration::from_secs(180), || {
        let p = cluster.pipeline()?;
        (p["status"]["phase"] == "Suspended").then_some(())
    });
    let replicas = cluster.kubectl(&[
        "get",
        "deployment",
        PIPELINE,
        "-o",
        "jsonpath={.spec.replicas}",
    ]);
    assert_eq!(replicas.trim(), "0");
    cluster.wait_for("the budget removed", Duration::from_secs(120), || {
        cluster
            .kubectl(&["get", "pdb", PIPELINE, "--ignore-not-found", "-o", "name"])
            .trim()
            .is_empty()
            .then_some(())
    });

    // Delete: the children are garbage-collected with their owner.
    cluster.kubectl(&[
        "delete",
        "streamingpipeline",
        PIPELINE,
        "--wait=true",
        "--timeout=120s",
    ]);
    cluster.wait_for("the children deleted", Duration::from_secs(180), || {
        cluster
            .kubectl(&[
                "get",
                "deployments,services,configmaps",
                "-l",
                &format!("app.kubernetes.io/instance={PIPELINE}"),
                "-o",
                "name",
            ])
            .trim()
            .is_empty()
            .then_some(())
    });
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
        &pipeline_manifest(
            "spillway-e2e-1",
            "kafka.kafka:9092",
            "e2e-1",
            "spillway-dev/spillway:0.1.0",
        ),
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

    let producer: serde_yaml::Value = serde_yaml::from_str(&producer_manifest(
        "spillway-dev/spillway:0.1.0",
        "kafka.kafka:9092",
        "e2e-1",
    ))
    .unwrap();
    let c = &producer["spec"]["containers"][0];
    assert_eq!(c["args"][0], "produce");
    assert_eq!(c["securityContext"]["capabilities"]["drop"][0], "ALL");
}
