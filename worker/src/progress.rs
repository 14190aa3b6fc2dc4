//! Progress: Spark-style reports per batch, the query status, and the shared state the
//! worker's `/progress` endpoint serves (the contract the operator reads).

use std::collections::VecDeque;
use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};
use spillway_api::StreamingQueryProgress;

/// Reports kept in memory and served as `recent`.
pub const RECENT: usize = 100;

/// Spark's `StreamingQueryStatus`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct QueryStatus {
    /// e.g. "Waiting for data to arrive", "Processing new data".
    pub message: String,
    /// Whether records are waiting to be processed.
    pub is_data_available: bool,
    /// Whether a batch is being processed.
    pub is_trigger_active: bool,
}

/// A condition a worker reports (the operator surfaces it on the resource).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct WorkerCondition {
    /// `DataLoss`, `SchemaError` or `Failed`.
    #[serde(rename = "type")]
    pub type_: String,
    /// CamelCase reason.
    pub reason: String,
    /// Message without secrets.
    pub message: String,
}

/// The `/progress` document.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ProgressDoc {
    /// The latest report.
    pub latest: Option<StreamingQueryProgress>,
    /// Up to [`RECENT`] reports, oldest first.
    pub recent: VecDeque<StreamingQueryProgress>,
    /// The query status.
    pub status: QueryStatus,
    /// Conditions (empty when healthy).
    pub conditions: Vec<WorkerCondition>,
    /// Records behind the high watermarks, summed over this worker's partitions.
    pub lag: Option<i64>,
}

impl Default for ProgressDoc {
    fn default() -> Self {
        Self {
            latest: None,
            recent: VecDeque::new(),
            status: QueryStatus {
                message: "Initializing sources".into(),
                is_data_available: false,
                is_trigger_active: false,
            },
            conditions: Vec::new(),
            lag: None,
        }
    }
}

/// Shared progress state (cheap to clone).
#[derive(Debug, Clone, Default)]
pub struct ProgressState(Arc<RwLock<ProgressDoc>>);

impl ProgressState {
    /// Records a batch's report.
    pub fn report(&self, p: StreamingQueryProgress, lag: Option<i64>) {
        if let Ok(mut d) = self.0.write() {
            d.recent.push_back(p.clone());
            while d.recent.len() > RECENT {
                d.recent.pop_front();
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
    /// Adds a condition.
    pub fn condition(&self, type_: &str, reason: &str, message: &str) {
        if let Ok(mut d) = self.0.write() {
            d.conditions.retain(|c| c.type_ != type_);
            d.conditions.push(WorkerCondition {
                type_: type_.into(),
                reason: reason.into(),
                message: message.into(),
            });
        }
    }
    /// A snapshot of the document.
    pub fn snapshot(&self) -> ProgressDoc {
        self.0.read().map(|d| d.clone()).unwrap_or_default()
    }
}
