//! The operator's Prometheus metrics (prometheus-client): reconciliations by result,
//! reconcile duration, pipelines by phase, each pipeline's phase and conditions, leadership.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};
use spillway_api::{Phase, StreamingPipelineStatus};

/// Every phase, for the `phase` label.
pub const PHASES: [Phase; 6] = [
    Phase::Pending,
    Phase::Running,
    Phase::Degraded,
    Phase::Suspended,
    Phase::Failed,
    Phase::Completed,
];

/// The name of a phase, as in the status.
pub fn phase_name(p: Phase) -> &'static str {
    match p {
        Phase::Pending => "Pending",
        Phase::Running => "Running",
        Phase::Degraded => "Degraded",
        Phase::Suspended => "Suspended",
        Phase::Failed => "Failed",
        Phase::Completed => "Completed",
    }
}

/// Label of a reconciliation: `Success`, `InvalidSpec`, or the error's static name.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    /// The result.
    pub result: &'static str,
}

/// Label of the pipelines gauge.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PhaseLabel {
    /// The phase.
    pub phase: &'static str,
}

/// Labels of `spillway_operator_pipeline_phase`: one series per phase of each pipeline.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PipelinePhaseLabels {
    /// The pipeline's namespace.
    pub namespace: String,
    /// The pipeline's name.
    pub pipeline: String,
    /// The phase.
    pub phase: &'static str,
}

/// Labels of `spillway_operator_pipeline_condition`: one series per status of each condition
/// type a pipeline has.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PipelineConditionLabels {
    /// The pipeline's namespace.
    pub namespace: String,
    /// The pipeline's name.
    pub pipeline: String,
    /// The condition type (`Ready`, `Progressing`, `Degraded`, `DataLoss`, `SchemaError`).
    pub r#type: String,
    /// `True`, `False` or `Unknown`.
    pub status: &'static str,
}

/// Every condition status, for the `status` label.
pub const CONDITION_STATUSES: [&str; 3] = ["True", "False", "Unknown"];

/// The label value of a condition's status; anything unexpected is `Unknown`.
fn condition_status(s: &str) -> &'static str {
    match s {
        "True" => "True",
        "False" => "False",
        _ => "Unknown",
    }
}

/// What the metrics last recorded of one pipeline.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Recorded {
    phase: Option<Phase>,
    /// Condition type → status label.
    conditions: BTreeMap<String, &'static str>,
}

/// The operator's metrics, registered under `spillway_operator_`.
#[derive(Debug)]
pub struct Metrics {
    /// `spillway_operator_reconciliations_total{result}`.
    pub reconciliations: Family<ResultLabel, Counter>,
    /// `spillway_operator_reconcile_duration_seconds`.
    pub reconcile_duration: Histogram,
    /// `spillway_operator_pipelines{phase}`.
    pub pipelines: Family<PhaseLabel, Gauge>,
    /// `spillway_operator_pipeline_phase{namespace,pipeline,phase}`: 1 for the pipeline's
    /// current phase, 0 for the others.
    pub pipeline_phase: Family<PipelinePhaseLabels, Gauge>,
    /// `spillway_operator_pipeline_condition{namespace,pipeline,type,status}`: 1 for each
    /// condition's current status, 0 for the other two.
    pub pipeline_condition: Family<PipelineConditionLabels, Gauge>,
    /// `spillway_operator_leader`: 1 while this replica holds the lease.
    pub leader: Gauge,
    /// `(namespace, name)` → what was last recorded.
    recorded: Mutex<HashMap<(String, String), Recorded>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            reconciliations: Family::default(),
            reconcile_duration: Histogram::new(exponential_buckets(0.005, 2.0, 14)),
            pipelines: Family::default(),
            pipeline_phase: Family::default(),
            pipeline_condition: Family::default(),
            leader: Gauge::default(),
            recorded: Mutex::default(),
        }
    }
}

impl Metrics {
    /// Registers the metrics with `registry` under the `spillway_operator` prefix.
    pub fn register(self, registry: &mut Registry) -> Self {
        let r = registry.sub_registry_with_prefix("spillway_operator");
        r.register(
            "reconciliations",
            "Reconciliations of StreamingPipelines by result",
            self.reconciliations.clone(),
        );
        r.register_with_unit(
            "reconcile_duration",
            "Duration of one reconciliation",
            Unit::Seconds,
            self.reconcile_duration.clone(),
        );
        r.register(
            "pipelines",
            "StreamingPipelines by phase",
            self.pipelines.clone(),
        );
        r.register(
            "pipeline_phase",
            "1 for the current phase of each StreamingPipeline, 0 for the other phases",
            self.pipeline_phase.clone(),
        );
        r.register(
            "pipeline_condition",
            "1 for the current status of each StreamingPipeline condition, 0 for the other statuses",
            self.pipeline_condition.clone(),
        );
        r.register(
            "leader",
            "1 while this replica holds the leader lease",
            self.leader.clone(),
        );
        for p in PHASES {
            let _ = self.pipelines.get_or_create(&PhaseLabel {
                phase: phase_name(p),
            });
        }
        self
    }

    /// Counts one reconciliation and its duration.
    pub fn reconciled(&self, result: &'static str, took: Duration) {
        self.reconciliations
            .get_or_create(&ResultLabel { result })
            .inc();
        self.reconcile_duration.observe(took.as_secs_f64());
    }

    /// Records the phase and conditions of pipeline `namespace/name` from its status.
    pub fn set_status(&self, namespace: &str, name: &str, status: &StreamingPipelineStatus) {
        let now = Recorded {
            phase: status.phase,
            conditions: status
                .conditions
                .iter()
                .map(|c| (c.type_.clone(), condition_status(&c.status)))
                .collect(),
        };
        let mut recorded = self.recorded.lock().unwrap_or_else(|e| e.into_inner());
        let key = (namespace.to_string(), name.to_string());
        let before = recorded.insert(key, now.clone());
        if before.as_ref() == Some(&now) {
            return;
        }
        if let Some(before) = &before {
            self.remove_series(namespace, name, before, Some(&now));
        }
        self.publish_pipeline(namespace, name, &now);
        self.publish_counts(&recorded);
    }

    /// Forgets a deleted pipeline: its series disappear.
    pub fn forget(&self, namespace: &str, name: &str) {
        let mut recorded = self.recorded.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(before) = recorded.remove(&(namespace.to_string(), name.to_string())) {
            self.remove_series(namespace, name, &before, None);
            self.publish_counts(&recorded);
        }
    }

    fn phase_labels(namespace: &str, name: &str, phase: Phase) -> PipelinePhaseLabels {
        PipelinePhaseLabels {
            namespace: namespace.to_string(),
            pipeline: name.to_string(),
            phase: phase_name(phase),
        }
    }

    fn condition_labels(
        namespace: &str,
        name: &str,
        type_: &str,
        status: &'static str,
    ) -> PipelineConditionLabels {
        PipelineConditionLabels {
            namespace: namespace.to_string(),
            pipeline: name.to_string(),
            r#type: type_.to_string(),
            status,
        }
    }

    /// Removes the series of `before` that `now` does not have (all of them when `None`).
    fn remove_series(
        &self,
        namespace: &str,
        name: &str,
        before: &Recorded,
        now: Option<&Recorded>,
    ) {
        if before.phase.is_some() && now.is_none_or(|n| n.phase.is_none()) {
            for p in PHASES {
                self.pipeline_phase
                    .remove(&Self::phase_labels(namespace, name, p));
            }
        }
        for type_ in before.conditions.keys() {
            if now.is_some_and(|n| n.conditions.contains_key(type_)) {
                continue;
            }
            for s in CONDITION_STATUSES {
                self.pipeline_condition
                    .remove(&Self::condition_labels(namespace, name, type_, s));
            }
        }
    }

    fn publish_pipeline(&self, namespace: &str, name: &str, now: &Recorded) {
        if let Some(current) = now.phase {
            for p in PHASES {
                self.pipeline_phase
                    .get_or_create(&Self::phase_labels(namespace, name, p))
                    .set(i64::from(p == current));
            }
        }
        for (type_, current) in &now.conditions {
            for s in CONDITION_STATUSES {
                self.pipeline_condition
                    .get_or_create(&Self::condition_labels(namespace, name, type_, s))
                    .set(i64::from(s == *current));
            }
        }
    }

    fn publish_counts(&self, recorded: &HashMap<(String, String), Recorded>) {
        for p in PHASES {
            let n = recorded.values().filter(|r| r.phase == Some(p)).count();
            self.pipelines
                .get_or_create(&PhaseLabel {
                    phase: phase_name(p),
                })
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

    fn status(phase: Phase, conditions: &[(&str, &str)]) -> StreamingPipelineStatus {
        StreamingPipelineStatus {
            phase: Some(phase),
            conditions: conditions
                .iter()
                .map(|(t, s)| Condition {
                    type_: (*t).into(),
                    status: (*s).into(),
                    reason: "Test".into(),
                    message: String::new(),
                    observed_generation: None,
                    last_transition_time: Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH),
                })
                .collect(),
            ..Default::default()
        }
    }

    fn encode(registry: &Registry) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, registry).unwrap();
        out
    }

    #[test]
    fn encodes_the_documented_names() {
        let mut registry = Registry::default();
        let m = Metrics::default().register(&mut registry);
        m.reconciled("Success", Duration::from_millis(20));
        m.reconciled("ApplyFailed", Duration::from_millis(20));
        m.set_status("ns", "a", &status(Phase::Running, &[]));
        m.set_status("ns", "b", &status(Phase::Running, &[]));
        m.set_status("ns", "b", &status(Phase::Failed, &[]));
        m.set_status("ns", "c", &status(Phase::Pending, &[]));
        m.forget("ns", "c");
        let out = encode(&registry);
        for line in [
            "spillway_operator_reconciliations_total{result=\"Success\"} 1",
            "spillway_operator_reconciliations_total{result=\"ApplyFailed\"} 1",
            "spillway_operator_reconcile_duration_seconds_count 2",
            "spillway_operator_pipelines{phase=\"Running\"} 1",
            "spillway_operator_pipelines{phase=\"Failed\"} 1",
            "spillway_operator_pipelines{phase=\"Pending\"} 0",
            "spillway_operator_leader 0",
        ] {
            assert!(out.contains(line), "{line} missing from\n{out}");
        }
    }

    #[test]
    fn per_pipeline_phase_and_conditions_follow_the_status() {
        let mut registry = Registry::default();
        let m = Metrics::default().register(&mut registry);
        m.set_status(
            "analytics",
            "orders",
            &status(Phase::Degraded, &[("Ready", "False"), ("DataLoss", "True")]),
        );
        let out = encode(&registry);
        for line in [
            "spillway_operator_pipeline_phase{namespace=\"analytics\",pipeline=\"orders\",phase=\"Degraded\"} 1",
            "spillway_operator_pipeline_phase{namespace=\"analytics\",pipeline=\"orders\",phase=\"Running\"} 0",
            "spillway_operator_pipeline_condition{namespace=\"analytics\",pipeline=\"orders\",type=\"DataLoss\",status=\"True\"} 1",
            "spillway_operator_pipeline_condition{namespace=\"analytics\",pipeline=\"orders\",type=\"DataLoss\",status=\"False\"} 0",
            "spillway_operator_pipeline_condition{namespace=\"analytics\",pipeline=\"orders\",type=\"Ready\",status=\"False\"} 1",
        ] {
            assert!(out.contains(line), "{line} missing from\n{out}");
        }

        // The condition clears and disappears; the phase moves.
        m.set_status(
            "analytics",
            "orders",
            &status(Phase::Running, &[("Ready", "True")]),
        );
        let out = encode(&registry);
        assert!(!out.contains("type=\"DataLoss\""), "{out}");
        assert!(out.contains(
            "spillway_operator_pipeline_phase{namespace=\"analytics\",pipeline=\"orders\",phase=\"Running\"} 1"
        ));
        assert!(out.contains(
            "spillway_operator_pipeline_phase{namespace=\"analytics\",pipeline=\"orders\",phase=\"Degraded\"} 0"
        ));
        assert!(out.contains(
            "spillway_operator_pipeline_condition{namespace=\"analytics\",pipeline=\"orders\",type=\"Ready\",status=\"True\"} 1"
        ));

        // A deleted pipeline leaves no series behind.
        m.forget("analytics", "orders");
        let out = encode(&registry);
        assert!(!out.contains("pipeline=\"orders\""), "{out}");
        assert!(out.contains("spillway_operator_pipelines{phase=\"Running\"} 0"));
    }
}
