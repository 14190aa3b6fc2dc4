//! The operator's Prometheus metrics (prometheus-client): reconciliations by result,
//! reconcile duration, pipelines by phase, leadership.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};
use spillway_api::Phase;

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

/// The operator's metrics, registered under `spillway_operator_`.
#[derive(Debug)]
pub struct Metrics {
    /// `spillway_operator_reconciliations_total{result}`.
    pub reconciliations: Family<ResultLabel, Counter>,
    /// `spillway_operator_reconcile_duration_seconds`.
    pub reconcile_duration: Histogram,
    /// `spillway_operator_pipelines{phase}`.
    pub pipelines: Family<PhaseLabel, Gauge>,
    /// `spillway_operator_leader`: 1 while this replica holds the lease.
    pub leader: Gauge,
    phases: Mutex<HashMap<String, Phase>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            reconciliations: Family::default(),
            reconcile_duration: Histogram::new(exponential_buckets(0.005, 2.0, 14)),
            pipelines: Family::default(),
            leader: Gauge::default(),
            phases: Mutex::default(),
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

    /// Records the phase of pipeline `key` (`namespace/name`).
    pub fn set_phase(&self, key: &str, phase: Phase) {
        let mut phases = self.phases.lock().unwrap_or_else(|e| e.into_inner());
        phases.insert(key.to_string(), phase);
        self.publish(&phases);
    }

    /// Forgets a deleted pipeline.
    pub fn forget(&self, key: &str) {
        let mut phases = self.phases.lock().unwrap_or_else(|e| e.into_inner());
        if phases.remove(key).is_some() {
            self.publish(&phases);
        }
    }

    fn publish(&self, phases: &HashMap<String, Phase>) {
        for p in PHASES {
            let n = phases.values().filter(|x| **x == p).count();
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

    #[test]
    fn encodes_the_documented_names() {
        let mut registry = Registry::default();
        let m = Metrics::default().register(&mut registry);
        m.reconciled("Success", Duration::from_millis(20));
        m.reconciled("ApplyFailed", Duration::from_millis(20));
        m.set_phase("ns/a", Phase::Running);
        m.set_phase("ns/b", Phase::Running);
        m.set_phase("ns/b", Phase::Failed);
        m.set_phase("ns/c", Phase::Pending);
        m.forget("ns/c");
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &registry).unwrap();
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
}
