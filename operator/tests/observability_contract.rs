//! Every `spillway_operator_*` metric the shipped Grafana dashboard and Prometheus alerts use
//! is exported by the operator's metrics, as `/metrics` encodes them.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use prometheus_client::registry::Registry;
use spillway_api::{Phase, StreamingPipelineStatus};
use spillway_e2e::observability::{Exposition, OPERATOR_PREFIX, referenced_metrics, repo_root};
use spillway_operator::metrics::Metrics;

fn condition(type_: &str, status: &str) -> Condition {
    Condition {
        type_: type_.into(),
        status: status.into(),
        reason: "Test".into(),
        message: String::new(),
        observed_generation: Some(1),
        last_transition_time: Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH),
    }
}

#[test]
fn dashboard_and_alerts_use_only_exported_operator_metrics() {
    let mut registry = Registry::default();
    let m = Metrics::default().register(&mut registry);
    m.leader.set(1);
    m.reconciled("Success", Duration::from_millis(12));
    m.reconciled("ApplyFailed", Duration::from_millis(30));
    m.set_status(
        "analytics",
        "orders",
        &StreamingPipelineStatus {
            phase: Some(Phase::Failed),
            conditions: vec![
                condition("Ready", "False"),
                condition("Degraded", "True"),
                condition("DataLoss", "True"),
            ],
            ..Default::default()
        },
    );
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    let exposition = Exposition::parse(&text);

    let used: Vec<String> = referenced_metrics(&repo_root())
        .unwrap()
        .into_iter()
        .filter(|n| n.starts_with(OPERATOR_PREFIX))
        .collect();
    for expected in [
        "spillway_operator_pipeline_phase",
        "spillway_operator_pipeline_condition",
    ] {
        assert!(
            used.iter().any(|n| n == expected),
            "the alerts should use {expected}: {used:?}"
        );
    }
    let missing = exposition.missing(&used);
    assert!(
        missing.is_empty(),
        "the dashboard or the rules use operator metrics it does not export: {missing:?}\n{text}"
    );
    for n in &used {
        assert!(
            exposition.has_samples(n),
            "{n} has no series after a reconciliation:\n{text}"
        );
    }

    // The series the alerts select, with the labels they group by.
    for line in [
        r#"spillway_operator_pipeline_phase{namespace="analytics",pipeline="orders",phase="Failed"} 1"#,
        r#"spillway_operator_pipeline_phase{namespace="analytics",pipeline="orders",phase="Degraded"} 0"#,
        r#"spillway_operator_pipeline_condition{namespace="analytics",pipeline="orders",type="DataLoss",status="True"} 1"#,
    ] {
        assert!(text.contains(line), "{line} missing from\n{text}");
    }
}

/// The chart's PodMonitor and NetworkPolicy select the worker pods by the labels and the
/// port the operator gives them.
#[test]
fn the_chart_selects_workers_by_the_operators_labels_and_port() {
    use spillway_operator::build::{
        HTTP_PORT_NAME, MANAGED_BY_LABEL, MANAGER, NAME_LABEL, WORKER_APP,
    };
    let templates = repo_root().join("charts/spillway/templates");
    let read = |f: &str| std::fs::read_to_string(templates.join(f)).unwrap();
    for file in ["podmonitor.yaml", "networkpolicy.yaml"] {
        let text = read(file);
        for (k, v) in [(NAME_LABEL, WORKER_APP), (MANAGED_BY_LABEL, MANAGER)] {
            assert!(text.contains(&format!("{k}: {v}")), "{file} lacks {k}: {v}");
        }
    }
    assert!(read("podmonitor.yaml").contains(&format!("- port: {HTTP_PORT_NAME}")));
    assert!(read("networkpolicy.yaml").contains(&format!(
        "- port: {}",
        spillway_api::defaults::WORKER_HTTP_PORT
    )));
}
