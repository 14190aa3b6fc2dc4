//! A worker that fails for good: pipelines with `onDataLoss: fail` told to start at offsets
//! Apache Kafka has already deleted (DeleteRecords through the admin API). The worker stops
//! with `DataLoss`, writes it as its termination message, and the operator reads that from
//! the pod after the process is gone: phase `Failed`, the lost range in the conditions, a
//! Warning Event. An `availableNow` pipeline's Job (`backoffLimit: 0`) is not restarted; a
//! streaming pipeline's worker is restarted by its kubelet, and the pipeline says why it
//! keeps failing instead of crash-looping silently.

use std::time::Duration;

use rdkafka::TopicPartitionList;
use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;
use serde_json::{Value, json};
use spillway_api::report::{WorkerCondition, WorkerConditionType};

use crate::fixtures::{condition, pipeline, table_uri};
use crate::harness::{self, Suite};

const NAME: &str = "e2e-lost";
/// The same start, as a streaming pipeline (a Deployment).
const STREAMING: &str = "e2e-lost-streaming";
/// Records produced, and the offset before which they are deleted.
const PRODUCED: i64 = 1_000;
const DELETED_BEFORE: i64 = 400;
/// Where the pipeline is told to start: inside the deleted range.
const START: i64 = 100;

/// The failing pipeline: drain once from offset [`START`] of partition 0, fail on data loss.
pub fn manifest(namespace: &str, topic: &str) -> Value {
    let mut p = pipeline(namespace, NAME, topic);
    let kafka = &mut p["spec"]["source"]["kafka"];
    kafka["onDataLoss"] = json!("fail");
    kafka["startingOffsets"] = json!("offsets");
    kafka["startingPartitionOffsets"] = json!({topic: {"0": START}});
    p["spec"]["trigger"] = json!({"availableNow": true});
    p
}

/// [`manifest`] on a trigger interval: a Deployment whose worker the kubelet restarts.
pub fn streaming_manifest(namespace: &str, topic: &str) -> Value {
    let mut p = manifest(namespace, topic);
    p["metadata"]["name"] = json!(STREAMING);
    let bucket = spillway_e2e::s3_bucket();
    p["spec"]["sink"]["delta"]["uri"] = json!(table_uri(namespace, STREAMING));
    p["spec"]["checkpoint"]["uri"] =
        json!(format!("s3://{bucket}/{namespace}/{STREAMING}/_checkpoint"));
    p["spec"]["trigger"] = json!({"interval": "2s"});
    p
}

/// Deletes the records of `topic`/0 before `offset` (the admin API's DeleteRecords).
fn delete_records(rt: &tokio::runtime::Runtime, topic: &str, offset: i64) {
    let admin: AdminClient<DefaultClientContext> = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", spillway_e2e::kafka_bootstrap())
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, rdkafka::Offset::Offset(offset))
        .unwrap();
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let result = rt.block_on(admin.delete_records(&tpl, &opts)).unwrap();
    let low = result.find_partition(topic, 0).unwrap();
    low.error().unwrap();
    assert_eq!(low.offset(), rdkafka::Offset::Offset(offset), "{result:?}");
}

#[test]
fn a_worker_that_hits_data_loss_fails_its_job_with_the_reason() {
    let Some(kubeconfig) = harness::kubeconfig() else {
        return;
    };
    harness::require_services();
    let mut suite = Suite::start(kubeconfig, "fail", 10);
    suite.install_operator(&[]);
    let namespace = suite.namespace.clone();
    suite.kubectl(&[
        "create",
        "secret",
        "generic",
        "s3",
        "--from-literal=id=test",
        "--from-literal=key=test",
    ]);
    let topic = spillway_e2e::unique("lost");
    suite.produce(&topic, PRODUCED as u64, 7, 1);
    delete_records(&suite.rt, &topic, DELETED_BEFORE);

    suite.apply_json(&manifest(&namespace, &topic));
    suite.apply_json(&streaming_manifest(&namespace, &topic));
    let status = suite.wait_for("phase Failed", Duration::from_secs(180), || {
        let s = suite.status(NAME)?;
        (s["phase"] == "Failed").then_some(s)
    });
    let range = format!("offsets {START}..{DELETED_BEFORE}");
    let ready = condition(&status, "Ready").unwrap();
    assert_eq!(ready["status"], "False", "{status}");
    assert_eq!(ready["reason"], "DataLoss", "{status}");
    let message = ready["message"].as_str().unwrap();
    assert!(
        message.contains(&range) && message.contains(&format!("{topic}/0")),
        "the Ready condition names the lost range: {message}"
    );
    let lost = condition(&status, "DataLoss").unwrap();
    assert_eq!(lost["status"], "True", "{status}");
    assert!(
        lost["message"].as_str().unwrap().contains(&range),
        "{status}"
    );
    assert_eq!(
        condition(&status, "Degraded").unwrap()["status"],
        "True",
        "{status}"
    );
    assert_eq!(status["lastError"]["reason"], "DataLoss", "{status}");

    // The Warning Event on the pipeline.
    let events = suite.wait_for("a DataLoss Event", Duration::from_secs(60), || {
        let ev = suite.events(NAME);
        ev.iter()
            .any(|(t, r, m)| t == "Warning" && r == "DataLoss" && m.contains(&range))
            .then_some(ev)
    });
    assert!(!events.is_empty());

    // The worker's own account, kept by the pod after the process ended.
    let pods = suite.worker_pods(NAME);
    assert_eq!(pods.len(), 1, "one pod, never replaced: {pods:?}");
    let pod = &pods[0];
    assert_eq!(pod["status"]["phase"], "Failed", "{pod}");
    let container = &pod["status"]["containerStatuses"][0];
    assert_eq!(container["restartCount"], 0, "{container}");
    let terminated = &container["state"]["terminated"];
    assert_ne!(terminated["exitCode"], 0, "{container}");
    let written =
        WorkerCondition::from_termination_message(terminated["message"].as_str().unwrap())
            .unwrap_or_else(|| panic!("no WorkerCondition in {terminated}"));
    assert_eq!(
        written.kind(),
        Some(WorkerConditionType::DataLoss),
        "{written:?}"
    );
    assert!(written.message.contains(&range), "{written:?}");

    // The Job failed once, with backoffLimit 0, and nothing runs it again.
    let job = suite.kubectl_json(&["get", "job", NAME]);
    assert_eq!(job["spec"]["backoffLimit"], 0, "{job}");
    assert_eq!(job["spec"]["template"]["spec"]["restartPolicy"], "Never");
    suite.wait_for("the Job Failed", Duration::from_secs(60), || {
        let j = suite.kubectl_json(&["get", "job", NAME]);
        let failed = j["status"]["conditions"]
            .as_array()?
            .iter()
            .any(|c| c["type"] == "Failed" && c["status"] == "True");
        failed.then_some(())
    });
    std::thread::sleep(Duration::from_secs(10));
    let job = suite.kubectl_json(&["get", "job", NAME]);
    assert_eq!(job["status"]["failed"], 1, "{job}");
    assert!(job["status"]["active"].is_null(), "{job}");
    assert_eq!(suite.worker_pods(NAME).len(), 1, "still the one pod");
    assert_eq!(suite.status(NAME).unwrap()["phase"], "Failed");

    // The streaming pipeline: its worker ends the same way each time the kubelet restarts
    // it, and the pipeline says so.
    let status = suite.wait_for(
        "the streaming pipeline Failed after a restart",
        Duration::from_secs(180),
        || {
            let s = suite.status(STREAMING)?;
            let pods = suite.worker_pods(STREAMING);
            let restarts =
                pods.first()?["status"]["containerStatuses"][0]["restartCount"].as_i64()?;
            (s["phase"] == "Failed" && restarts >= 1).then_some(s)
        },
    );
    let ready = condition(&status, "Ready").unwrap();
    assert_eq!(ready["reason"], "DataLoss", "{status}");
    assert!(
        ready["message"].as_str().unwrap().contains(&range),
        "{status}"
    );
    // While the kubelet restarts it, the reason stays (a restarted worker keeps its last
    // end until it is ready again).
    for _ in 0..5 {
        std::thread::sleep(Duration::from_secs(2));
        let s = suite.status(STREAMING).unwrap();
        assert_eq!(s["phase"], "Failed", "{s}");
        assert_eq!(condition(&s, "Ready").unwrap()["reason"], "DataLoss", "{s}");
    }
    suite.wait_for(
        "a DataLoss Event on the streaming pipeline",
        Duration::from_secs(60),
        || {
            suite
                .events(STREAMING)
                .iter()
                .any(|(t, r, _)| t == "Warning" && r == "DataLoss")
                .then_some(())
        },
    );
}
