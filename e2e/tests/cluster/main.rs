//! Cluster mode on a real Kubernetes control plane: the chart and pipelines driven with
//! `helm` and `kubectl` exactly as a user would.
//!
//! `e2e/scripts/k8s.sh start` runs etcd, kube-apiserver and kube-controller-manager on
//! loopback and exports `SPILLWAY_E2E_KUBECONFIG` (an admin kubeconfig). There is no kubelet
//! here: each test runs [`spillway_e2e::kubelet`], a stand-in that binds the pods of its
//! namespaces to its own Node and runs each as a local process of the built `spillway` /
//! `spillway-operator` binary, with the pod's args, env, volumes and ServiceAccount token, on
//! its own loopback address, probing it there. The operator thus authenticates as the
//! chart's ServiceAccount and the chart's RBAC is what the API server enforces. Each test
//! installs the chart as its own release watching only its own namespace ([`harness`]), so
//! the tests run side by side.
//!
//! The tests:
//! - this file: `helm install` → a Secret with the S3 credentials → a pipeline into a Delta
//!   table on moto, reading Apache Kafka → workers Ready through their own probes, phase
//!   Running, `status.progress` from their `/progress`, `kubectl get sp` columns, every offset
//!   once (read back with Python `deltalake`) → scale to 2 → the operator SIGKILLed: its
//!   Lease moves to the new operator pod and nothing changes for the workers → suspend and
//!   resume → an `availableNow` pipeline and an `endingOffsets` one as Jobs to `Completed`
//!   → a child name taken by someone else's ConfigMap → delete (children garbage-collected by the controller manager);
//! - [`validation`]: every invalid manifest of the shared table is refused by the API server
//!   at the path `spillway validate` reports;
//! - [`failure`]: a worker that hits data loss ends its Job `Failed` with the reason in the
//!   status and an Event, and is not restarted; a streaming one keeps saying why while the
//!   kubelet restarts it;
//! - [`prometheus`]: a real Prometheus scrapes the workers and the operator at their pod
//!   addresses (the pods listed from the API server), answers the dashboard's queries, and
//!   fires an alert;
//! - [`credentials`]: object storage credentials from the pod environment (no
//!   `credentialsSecretRef`) for Delta, Parquet and the checkpoint.
//!
//! In CI (`CI` set) a missing `SPILLWAY_E2E_KUBECONFIG` fails every test; elsewhere each
//! prints one `cluster e2e SKIPPED: …` line.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod credentials;
mod failure;
mod fixtures;
mod harness;
#[path = "../../../operator/api/tests/support/invalid_manifests.rs"]
mod invalid_manifests;
mod prometheus;
mod validation;

use std::time::Duration;

use serde_json::{Value, json};

use fixtures::{Counts, condition, pipeline, producer_manifest, table_counts, table_uri};
use harness::Suite;

const PIPELINE: &str = "e2e-events";

#[test]
fn chart_and_pipeline_lifecycle_on_a_real_cluster() {
    let Some(kubeconfig) = harness::kubeconfig() else {
        return;
    };
    harness::require_services();
    let mut suite = Suite::start(kubeconfig, "life", 0);
    // A short Lease, so the takeover after the operator's crash below takes seconds.
    suite.install_operator(&["operator.leaderElection.leaseDuration=6s"]);
    let namespace = suite.namespace.clone();
    let topic = spillway_e2e::unique("e2e");

    // The S3 credentials as a real Secret; the pipeline only references it.
    suite.kubectl(&[
        "create",
        "secret",
        "generic",
        "s3",
        "--from-literal=id=test",
        "--from-literal=key=test",
    ]);

    // Records to read, produced by a pod.
    suite.apply(&producer_manifest("producer", &topic, 20_000, 1));
    suite.kubectl(&[
        "wait",
        "pod/producer",
        "--for=jsonpath={.status.phase}=Succeeded",
        "--timeout=300s",
    ]);

    // A child name taken by someone else: the pipeline leaves it alone and says why.
    suite.kubectl(&[
        "create",
        "configmap",
        &format!("{PIPELINE}-pipeline"),
        "--from-literal=theirs=yes",
    ]);
    suite.apply_json(&pipeline(&namespace, PIPELINE, &topic));
    let status = suite.wait_for("condition ChildNotOwned", Duration::from_secs(120), || {
        let s = suite.status(PIPELINE)?;
        let ready = condition(&s, "Ready")?;
        (ready["reason"] == "ChildNotOwned").then(|| s.clone())
    });
    assert_eq!(status["phase"], "Failed", "{status}");
    let theirs = suite.kubectl(&[
        "get",
        "configmap",
        &format!("{PIPELINE}-pipeline"),
        "-o",
        "jsonpath={.data.theirs}",
    ]);
    assert_eq!(theirs.trim(), "yes", "the foreign ConfigMap is untouched");
    assert!(
        suite
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
    suite.kubectl(&["delete", "configmap", &format!("{PIPELINE}-pipeline")]);

    // The pipeline: workers Ready through their own probes, Running, progress in status.
    let status = suite.wait_for(
        "phase Running with status.progress",
        Duration::from_secs(300),
        || {
            let s = suite.status(PIPELINE)?;
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
    let table = table_uri(&namespace, PIPELINE);
    suite.wait_for("20000 rows, each once", Duration::from_secs(300), || {
        (table_counts(&table) == Counts::once(20_000)).then_some(())
    });
    let listing = suite.kubectl(&["get", "sp", PIPELINE]);
    for column in ["PHASE", "READY", "LAG", "ROWS/S", "AGE", "Running"] {
        assert!(
            listing.contains(column),
            "kubectl get sp lacks {column}:\n{listing}"
        );
    }
    let children = suite.kubectl(&[
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
    suite.kubectl(&["scale", "streamingpipeline", PIPELINE, "--replicas=2"]);
    suite.wait_for("2 ready workers", Duration::from_secs(300), || {
        let p = suite.pipeline(PIPELINE)?;
        (p["spec"]["replicas"] == 2 && p["status"]["readyReplicas"] == 2).then_some(())
    });
    suite.apply(&producer_manifest("producer-2", &topic, 10_000, 2));
    suite.wait_for("30000 rows, each once", Duration::from_secs(300), || {
        (table_counts(&table) == Counts::once(30_000)).then_some(())
    });

    operator_restart_changes_nothing(&suite, &topic);

    // Suspend: no worker pod, no budget, phase Suspended, progress kept; then resume.
    suite.kubectl(&[
        "patch",
        "streamingpipeline",
        PIPELINE,
        "--type=merge",
        "-p",
        r#"{"spec":{"suspend":true}}"#,
    ]);
    let suspended = suite.wait_for(
        "phase Suspended, no worker pod",
        Duration::from_secs(180),
        || {
            let s = suite.status(PIPELINE)?;
            (s["phase"] == "Suspended" && suite.worker_pods(PIPELINE).is_empty()).then_some(s)
        },
    );
    assert!(
        suspended["progress"]["batchId"].is_i64(),
        "progress kept: {suspended}"
    );
    suite.kubectl(&[
        "patch",
        "streamingpipeline",
        PIPELINE,
        "--type=merge",
        "-p",
        r#"{"spec":{"suspend":false}}"#,
    ]);
    suite.wait_for("Running again", Duration::from_secs(300), || {
        let s = suite.status(PIPELINE)?;
        (s["phase"] == "Running" && s["readyReplicas"] == 2).then_some(())
    });
    assert_eq!(
        table_counts(&table),
        Counts::once(35_000),
        "resuming duplicates nothing"
    );

    // availableNow: a Job that runs to Completed and is not restarted.
    let once = "e2e-once";
    let mut manifest = pipeline(&namespace, once, &topic);
    manifest["spec"]["trigger"] = json!({"availableNow": true});
    suite.apply_json(&manifest);
    let done = suite.wait_for(
        "the availableNow pipeline Completed",
        Duration::from_secs(300),
        || {
            let s = suite.status(once)?;
            (s["phase"] == "Completed").then_some(s)
        },
    );
    assert_eq!(
        condition(&done, "Ready").unwrap()["reason"],
        "Completed",
        "{done}"
    );
    let job = suite.kubectl_json(&["get", "job", once]);
    assert_eq!(job["status"]["succeeded"], 1, "{job}");
    assert!(job["status"]["failed"].is_null(), "not restarted: {job}");
    assert!(
        suite
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
    assert_eq!(
        table_counts(&table_uri(&namespace, once)),
        Counts::once(35_000)
    );

    // endingOffsets: a bounded backfill, also a Job to Completed, reading its range once.
    let backfill = "e2e-backfill";
    let mut manifest = pipeline(&namespace, backfill, &topic);
    manifest["spec"]["source"]["kafka"]["endingOffsets"] = json!("latest");
    // a bounded run has no trigger interval (the API server refuses one)
    manifest["spec"].as_object_mut().unwrap().remove("trigger");
    suite.apply_json(&manifest);
    let done = suite.wait_for(
        "the endingOffsets pipeline Completed",
        Duration::from_secs(300),
        || {
            let s = suite.status(backfill)?;
            (s["phase"] == "Completed").then_some(s)
        },
    );
    assert_eq!(
        condition(&done, "Ready").unwrap()["reason"],
        "Completed",
        "{done}"
    );
    let job = suite.kubectl_json(&["get", "job", backfill]);
    assert_eq!(job["status"]["succeeded"], 1, "{job}");
    assert_eq!(
        table_counts(&table_uri(&namespace, backfill)),
        Counts::once(35_000)
    );

    // Delete: the children go with their owner (the controller manager's garbage collector).
    for name in [PIPELINE, once, backfill] {
        suite.kubectl(&[
            "delete",
            "streamingpipeline",
            name,
            "--wait=true",
            "--timeout=120s",
        ]);
    }
    suite.wait_for("the children deleted", Duration::from_secs(180), || {
        suite
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
    println!("cluster e2e passed in namespace {namespace}");
}

/// A worker pod as the restart check compares it: name, uid, restarts.
#[derive(Debug, Clone, PartialEq, Eq)]
struct WorkerPod {
    name: String,
    uid: String,
    restarts: i64,
}

fn worker_pods(suite: &Suite) -> Vec<WorkerPod> {
    suite
        .worker_pods(PIPELINE)
        .iter()
        .map(|p| WorkerPod {
            name: p["metadata"]["name"].as_str().unwrap().into(),
            uid: p["metadata"]["uid"].as_str().unwrap().into(),
            restarts: p["status"]["containerStatuses"][0]["restartCount"]
                .as_i64()
                .unwrap_or(-1),
        })
        .collect()
}

/// The leader Lease's holder and transitions.
fn lease(suite: &Suite) -> (String, i64) {
    let l: Value = serde_json::from_str(&suite.run(
        "kubectl",
        &[
            "--namespace",
            &suite.operator_ns,
            "get",
            "lease",
            &suite.release,
            "-o",
            "json",
        ],
    ))
    .unwrap();
    (
        l["spec"]["holderIdentity"]
            .as_str()
            .unwrap_or_default()
            .into(),
        l["spec"]["leaseTransitions"].as_i64().unwrap_or(0),
    )
}

/// The operator process is SIGKILLed (no Lease release) and its pod force-deleted: the
/// ReplicaSet's new pod takes the Lease over once it expires, and the running pipeline does
/// not notice — the same worker pods, no restart, no rewrite of its children, progress goes
/// on and new records land exactly once.
fn operator_restart_changes_nothing(suite: &Suite, topic: &str) {
    let (old, transitions) = lease(suite);
    assert!(old.starts_with(&suite.release), "lease holder {old:?}");
    let before = worker_pods(suite);
    assert_eq!(before.len(), 2, "{before:?}");
    assert!(before.iter().all(|p| p.restarts == 0), "{before:?}");
    let deployment = suite.kubectl_json(&["get", "deployment", PIPELINE]);
    let configmap = suite.kubectl_json(&["get", "configmap", &format!("{PIPELINE}-pipeline")]);
    let batch = suite.status(PIPELINE).unwrap()["progress"]["batchId"]
        .as_i64()
        .unwrap();

    let killed = std::time::Instant::now();
    assert!(
        suite.kubelet().crash(&suite.operator_ns, &old),
        "no operator process ran for pod {old}"
    );
    suite.run(
        "kubectl",
        &[
            "--namespace",
            &suite.operator_ns,
            "delete",
            "pod",
            &old,
            "--force",
            "--grace-period=0",
        ],
    );
    let new = suite.wait_for("the Lease taken over", Duration::from_secs(120), || {
        let (holder, _) = lease(suite);
        (!holder.is_empty() && holder != old).then_some(holder)
    });
    let takeover = killed.elapsed();
    let (_, after) = lease(suite);
    assert_eq!(after, transitions + 1, "one transition, to {new}");
    let pod = suite.run(
        "kubectl",
        &[
            "--namespace",
            &suite.operator_ns,
            "get",
            "pod",
            &new,
            "-o",
            "jsonpath={.status.podIP}",
        ],
    );
    let (code, metrics) = fixtures::http_get(&format!("http://{}:8080/metrics", pod.trim()), &[]);
    assert_eq!(code, 200, "{metrics}");
    assert!(
        metrics.contains("spillway_operator_leader 1"),
        "the new operator leads:\n{metrics}"
    );

    // The new leader keeps the status moving; more records land exactly once.
    suite.apply(&producer_manifest("producer-3", topic, 5_000, 3));
    let table = table_uri(&suite.namespace, PIPELINE);
    suite.wait_for(
        "35000 rows, each once, after the takeover",
        Duration::from_secs(300),
        || (table_counts(&table) == Counts::once(35_000)).then_some(()),
    );
    suite.wait_for(
        "progress reported by the new leader",
        Duration::from_secs(120),
        || {
            let s = suite.status(PIPELINE)?;
            (s["progress"]["batchId"].as_i64()? > batch && s["phase"] == "Running").then_some(())
        },
    );
    assert_eq!(
        worker_pods(suite),
        before,
        "the same workers, not restarted"
    );
    let deployment_after = suite.kubectl_json(&["get", "deployment", PIPELINE]);
    assert_eq!(
        deployment_after["metadata"]["generation"], deployment["metadata"]["generation"],
        "the new operator did not change the Deployment's spec"
    );
    let configmap_after =
        suite.kubectl_json(&["get", "configmap", &format!("{PIPELINE}-pipeline")]);
    assert_eq!(
        configmap_after["metadata"]["resourceVersion"], configmap["metadata"]["resourceVersion"],
        "the new operator did not rewrite the pipeline file"
    );
    println!(
        "operator restart: Lease {old} → {new} {:.1}s after the SIGKILL; workers {:?} unchanged",
        takeover.as_secs_f64(),
        before.iter().map(|p| p.name.as_str()).collect::<Vec<_>>()
    );
}

#[test]
fn image_references_split_into_repository_and_tag() {
    use harness::split_image;
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

/// The manifests these tests apply and the one docs/install.md shows parse and pass the same
/// checks as `spillway validate` (the cluster tests themselves cannot run everywhere).
#[test]
fn the_cluster_pipelines_and_the_install_guides_example_are_valid() {
    use spillway_api::{manifest, validate};
    let check = |what: &str, text: &str| {
        let p = manifest::parse(text).unwrap_or_else(|e| panic!("{what}: {e}\n{text}"));
        validate::validate(&p.spec).unwrap_or_else(|e| panic!("{what}: {e:?}\n{text}"));
        p
    };
    let text = |v: &Value| serde_json::to_string(v).unwrap();
    let p = check(
        "cluster pipeline",
        &text(&pipeline("spillway-e2e-1", PIPELINE, "e2e-1")),
    );
    assert_eq!(p.spec.replicas, 1);
    assert!(!p.spec.suspend);
    for (what, manifest) in [
        ("data-loss pipeline", failure::manifest("ns", "t")),
        (
            "streaming data-loss pipeline",
            failure::streaming_manifest("ns", "t"),
        ),
        ("dead-letter pipeline", prometheus::manifest("ns", "t")),
        (
            "environment-credentials delta pipeline",
            credentials::delta_manifest("ns", "t"),
        ),
        (
            "environment-credentials parquet pipeline",
            credentials::parquet_manifest("ns", "t"),
        ),
    ] {
        check(what, &text(&manifest));
    }

    let guide = std::fs::read_to_string(harness::repo_root().join("docs/install.md")).unwrap();
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
