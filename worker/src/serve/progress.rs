//! Progress: the shared state the worker's `/progress` endpoint serves — Spark-style reports
//! per batch, the query status and conditions — as the `spillway_api::report` contract the
//! operator reads.

use std::sync::{Arc, RwLock};

use spillway_api::StreamingQueryProgress;
pub use spillway_api::report::{QueryStatus, WorkerCondition, WorkerConditionType, WorkerProgress};

/// Reports kept in memory and served as `recent`.
pub const RECENT: usize = 100;

/// Shared progress state (cheap to clone).
#[derive(Debug, Clone)]
pub struct ProgressState(Arc<RwLock<WorkerProgress>>);

impl Default for ProgressState {
    fn default() -> Self {
        Self(Arc::new(RwLock::new(WorkerProgress {
            status: QueryStatus {
                message: "Initializing sources".into(),
                is_data_available: false,
                is_trigger_active: false,
            },
            ..Default::default()
        })))
    }
}

impl ProgressState {
    /// Records a batch's report.
    pub fn report(&self, p: StreamingQueryProgress, lag: Option<i64>) {
        if let Ok(mut d) = self.0.write() {
            d.recent.push(p.clone());
            if d.recent.len() > RECENT {
                let extra = d.recent.len() - RECENT;
                d.recent.drain(..extra);
            }
            d.latest = Some(p);
            d.lag = lag;
        }
    }
    /// Sets the status.
    pub fn status(&self, message: &str, is_data_available: bool, is_trigger_active: bool) {
        if let Ok(mut d) = self.0.write() {
            d.status = QueryStatus {
                message: message.into(),
                is_data_available,
                is_trigger_active,
            };
        }
    }
    /// Sets the condition of a type (replacing an earlier one of that type).
    pub fn condition(&self, kind: WorkerConditionType, reason: &str, message: &str) {
        if let Ok(mut d) = self.0.write() {
            d.conditions.retain(|c| c.kind() != Some(kind));
            d.conditions
                .push(WorkerCondition::new(kind, reason, message));
        }
    }
    /// A snapshot of the document.
    pub fn snapshot(&self) -> WorkerProgress {
        self.0.read().map(|d| d.clone()).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the worker serves parses on the operator's side (the same type), through JSON.
    #[test]
    fn the_served_document_parses_as_the_operator_reads_it() {
        let state = ProgressState::default();
        state.condition(WorkerConditionType::DataLoss, "DataLoss", "t/0 lost 0..5");
        state.condition(WorkerConditionType::Completed, "Completed", "done");
        let json = serde_json::to_string(&state.snapshot()).unwrap();
        let read: WorkerProgress = serde_json::from_str(&json).unwrap();
        let kinds: Vec<_> = read.conditions.iter().map(|c| c.kind()).collect();
        assert_eq!(
            kinds,
            [
                Some(WorkerConditionType::DataLoss),
                Some(WorkerConditionType::Completed)
            ]
        );
        assert_eq!(read.status.message, "Initializing sources");
    }
}
