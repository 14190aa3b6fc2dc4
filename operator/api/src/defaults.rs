//! Pure: every default of the spec, in one place.
//!
//! The serde defaults below fill a manifest's omitted fields when it is parsed, and the same
//! functions put `default:` into the CRD schema, so the API server, `spillway validate` and
//! the worker agree on them. Defaults that depend on other fields (group id, trigger
//! interval, reader schema) are resolved by the `effective_*` accessors of each type.

/// Worker pods (consumer-group members).
pub const REPLICAS: i32 = 1;
/// Spark's `maxOffsetsPerTrigger`: records per micro-batch at most.
pub const MAX_RECORDS_PER_BATCH: i64 = 500_000;
/// Key and value bytes per micro-batch at most (256 MiB).
pub const MAX_BYTES_PER_BATCH: i64 = 256 * 1024 * 1024;
/// Smallest `maxBytesPerBatch` accepted (1 MiB).
pub const MIN_BYTES_PER_BATCH: i64 = 1024 * 1024;
/// Largest `maxBytesPerBatch` accepted (1 GiB): a batch's one record past it stays below
/// Arrow's 2 GiB per column.
pub const MAX_BYTES_PER_BATCH_LIMIT: i64 = 1024 * 1024 * 1024;
/// Trigger interval when neither `interval` nor `availableNow` is set.
pub const TRIGGER_INTERVAL: &str = "10s";
/// Lateness allowed behind the maximum event time before rows are dropped.
pub const ALLOWED_LATENESS: &str = "0s";
/// Vacuum retention (Delta's own default).
pub const VACUUM_RETENTION: &str = "168h";
/// Optimize target file size in bytes (Delta's default, 100 MiB).
pub const TARGET_FILE_SIZE: i64 = 104_857_600;
/// Worker image when `spec.worker.image` is unset.
pub const WORKER_IMAGE: &str = "spillway-dev/spillway:0.1.0";
/// Schema registry request timeout.
pub const REGISTRY_TIMEOUT: &str = "10s";
/// Port of the worker's HTTP server (`/progress`, `/metrics`, `/healthz`, `/readyz`).
pub const WORKER_HTTP_PORT: i32 = 8080;

pub(crate) fn replicas() -> i32 {
    REPLICAS
}
pub(crate) fn max_records_per_batch() -> i64 {
    MAX_RECORDS_PER_BATCH
}
pub(crate) fn max_bytes_per_batch() -> i64 {
    MAX_BYTES_PER_BATCH
}
pub(crate) fn registry_timeout() -> String {
    REGISTRY_TIMEOUT.to_string()
}
pub(crate) fn allowed_lateness() -> String {
    ALLOWED_LATENESS.to_string()
}
pub(crate) fn vacuum_retention() -> String {
    VACUUM_RETENTION.to_string()
}
pub(crate) fn target_file_size() -> i64 {
    TARGET_FILE_SIZE
}

/// The consumer group of a pipeline when `groupId` is unset: `spillway.<namespace>.<name>`.
pub fn group_id(namespace: &str, name: &str) -> String {
    format!("spillway.{namespace}.{name}")
}
