//! Pure: the worker's `/progress` JSON contract, as serde types.
//!
//! `GET http://<podIP>:<port "http">/progress` answers with a [`WorkerProgress`]. The worker
//! serves it (and writes its final [`WorkerCondition`] as the container's termination
//! message); the operator only reads it. Both binaries use these types. Unknown fields are
//! ignored and every field has a default, so either side can add fields without breaking
//! the other.

use serde::{Deserialize, Serialize};

use crate::StreamingQueryProgress;

/// The most a container's termination message may hold (the kubelet's limit).
pub const TERMINATION_MESSAGE_LIMIT: usize = 4096;

/// Path of the progress endpoint on the worker's named port `http`.
pub const PROGRESS_PATH: &str = "/progress";

/// One worker's answer on `/progress`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct WorkerProgress {
    /// The report of the worker's latest committed micro-batch; `null` before the first one.
    #[serde(default)]
    pub latest: Option<StreamingQueryProgress>,
    /// The worker's recent reports, oldest first (the latest included).
    #[serde(default)]
    pub recent: Vec<StreamingQueryProgress>,
    /// What the query is doing now (Spark's `StreamingQueryStatus`).
    #[serde(default)]
    pub status: QueryStatus,
    /// Problems the worker reports; empty when healthy.
    #[serde(default)]
    pub conditions: Vec<WorkerCondition>,
    /// Records behind the high watermarks of the partitions this worker owns.
    #[serde(default)]
    pub lag: Option<i64>,
}

/// Spark's `StreamingQueryStatus`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct QueryStatus {
    /// e.g. `Waiting for next trigger`, `Processing new data`.
    #[serde(default)]
    pub message: String,
    /// Whether records are waiting to be read.
    #[serde(default)]
    pub is_data_available: bool,
    /// Whether a micro-batch is running.
    #[serde(default)]
    pub is_trigger_active: bool,
}

/// A problem (or terminal state) a worker reports.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct WorkerCondition {
    /// One of [`WorkerConditionType`]'s names; unknown types are ignored by the operator.
    #[serde(rename = "type")]
    pub type_: String,
    /// A CamelCase reason, e.g. `OffsetOutOfRange`.
    #[serde(default)]
    pub reason: String,
    /// A human-readable message without secrets.
    #[serde(default)]
    pub message: String,
}

/// The condition types the operator understands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum WorkerConditionType {
    /// A fatal error stopped the query (e.g. a bad record under `onBadRecord: fail`).
    Failed,
    /// Offsets the pipeline still needed were deleted from Kafka (`onDataLoss: fail` stops).
    DataLoss,
    /// A writer schema cannot be resolved to the reader / table schema.
    SchemaError,
    /// An `availableNow` run drained its end offsets and committed; the worker idles.
    Completed,
}

impl WorkerConditionType {
    /// Parses a condition type name; `None` for types this operator does not know.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "Failed" => Some(Self::Failed),
            "DataLoss" => Some(Self::DataLoss),
            "SchemaError" => Some(Self::SchemaError),
            "Completed" => Some(Self::Completed),
            _ => None,
        }
    }
    /// The name, as it appears in the JSON and in the pipeline's conditions.
    pub fn name(self) -> &'static str {
        match self {
            Self::Failed => "Failed",
            Self::DataLoss => "DataLoss",
            Self::SchemaError => "SchemaError",
            Self::Completed => "Completed",
        }
    }
}

impl WorkerCondition {
    /// A condition of a known type.
    pub fn new(kind: WorkerConditionType, reason: &str, message: &str) -> Self {
        Self {
            type_: kind.name().into(),
            reason: reason.into(),
            message: message.into(),
        }
    }

    /// The condition's type, when known.
    pub fn kind(&self) -> Option<WorkerConditionType> {
        WorkerConditionType::parse(&self.type_)
    }

    /// The condition as a container termination message: one line of JSON of at most
    /// [`TERMINATION_MESSAGE_LIMIT`] bytes (a long message is cut on a char boundary).
    pub fn to_termination_message(&self) -> String {
        let mut c = self.clone();
        loop {
            let json = serde_json::to_string(&c).unwrap_or_default();
            if json.len() <= TERMINATION_MESSAGE_LIMIT || c.message.is_empty() {
                return json;
            }
            let mut cut = c
                .message
                .len()
                .saturating_sub(json.len() - TERMINATION_MESSAGE_LIMIT + 3);
            while !c.message.is_char_boundary(cut) {
                cut -= 1;
            }
            c.message.truncate(cut);
            c.message.push_str("...");
        }
    }

    /// Parses a termination message written by [`Self::to_termination_message`]; `None` for
    /// anything else (e.g. the log tail `FallbackToLogsOnError` puts there).
    pub fn from_termination_message(text: &str) -> Option<Self> {
        serde_json::from_str(text.trim()).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_example() {
        let json = r#"{
          "latest": {"id": "q", "runId": "r", "batchId": 7, "timestamp": "2025-01-01T00:00:00Z",
                     "numInputRows": 10, "inputRowsPerSecond": 1.5, "processedRowsPerSecond": 2.0,
                     "sources": [], "sink": {"description": "DeltaSink[s3://l/t]", "numOutputRows": 10}},
          "recent": [],
          "status": {"message": "Waiting for next trigger", "isDataAvailable": false, "isTriggerActive": false},
          "conditions": [{"type": "DataLoss", "reason": "OffsetOutOfRange", "message": "t/0 lost 0..5"}],
          "lag": 42
        }"#;
        let p: WorkerProgress = serde_json::from_str(json).unwrap();
        assert_eq!(p.latest.as_ref().map(|l| l.batch_id), Some(7));
        assert_eq!(p.lag, Some(42));
        assert_eq!(p.conditions[0].kind(), Some(WorkerConditionType::DataLoss));
        assert_eq!(p.status.message, "Waiting for next trigger");
    }

    #[test]
    fn termination_messages_round_trip_within_the_limit() {
        let short =
            WorkerCondition::new(WorkerConditionType::DataLoss, "DataLoss", "t/0 lost 0..5");
        let text = short.to_termination_message();
        assert_eq!(
            WorkerCondition::from_termination_message(&text),
            Some(short)
        );
        let long = WorkerCondition::new(WorkerConditionType::Failed, "Sink", &"é".repeat(5000));
        let text = long.to_termination_message();
        assert!(text.len() <= TERMINATION_MESSAGE_LIMIT, "{}", text.len());
        let back = WorkerCondition::from_termination_message(&text).unwrap();
        assert_eq!(back.kind(), Some(WorkerConditionType::Failed));
        assert!(back.message.ends_with("..."));
        assert_eq!(
            WorkerCondition::from_termination_message("panicked at main.rs"),
            None
        );
    }

    #[test]
    fn tolerates_missing_and_unknown_fields() {
        let p: WorkerProgress = serde_json::from_str(
            r#"{"latest": null, "extra": 1, "conditions": [{"type": "Odd"}]}"#,
        )
        .unwrap();
        assert_eq!(p.latest, None);
        assert_eq!(p.lag, None);
        assert_eq!(p.conditions[0].kind(), None);
    }
}
