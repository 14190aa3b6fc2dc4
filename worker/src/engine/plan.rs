//! Pure: the manifest resolved once into what the loop runs by — names, batch bounds, the
//! trigger, the stages a batch goes through and the bad-record policy.

use std::time::Duration;

use spillway_api::{MetadataColumn, OnBadRecord, OnDataLoss, validate};

use super::transform::SqlTransform;
use crate::manifest::LoadedPipeline;

/// What the loop runs by.
pub(super) struct Plan {
    /// The pipeline's name.
    pub name: String,
    /// Its consumer group (and sink owner).
    pub group: String,
    /// `transform.sql`.
    pub sql: Option<SqlTransform>,
    /// `errors.onBadRecord`.
    pub policy: OnBadRecord,
    /// `transform.metadataColumns`.
    pub cols: Vec<MetadataColumn>,
    /// Whether the key / headers are kept per row (only for those columns).
    pub want_key: bool,
    pub want_headers: bool,
    /// A bounded run (`trigger.availableNow` or `source.kafka.endingOffsets`): it ends when
    /// every partition reached its end in the sink.
    pub bounded: bool,
    /// `source.kafka.endingOffsets` is set: the ends are kept in the checkpoint.
    pub ending_offsets: bool,
    /// The trigger interval (never zero).
    pub interval: Duration,
    /// `maxRecordsPerBatch`, `maxBytesPerBatch`.
    pub max_records: i64,
    pub max_bytes: i64,
    /// `onDataLoss`.
    pub on_data_loss: OnDataLoss,
    /// Explicit topics (none with a pattern).
    pub topics: Option<Vec<String>>,
    /// `eventTime`: the column and the allowed lateness (bounded).
    pub event_time: Option<(String, Duration)>,
}

impl Plan {
    pub fn new(loaded: &LoadedPipeline) -> Self {
        let p = &loaded.pipeline;
        let spec = &p.spec;
        let name = p.metadata.name.clone().unwrap_or_default();
        let namespace = p.metadata.namespace.as_deref().unwrap_or("default");
        let kafka = &spec.source.kafka;
        let cols: Vec<MetadataColumn> = spec
            .transform
            .as_ref()
            .map(|t| t.metadata_columns.clone())
            .unwrap_or_default();
        let trigger = spec.effective_trigger();
        Self {
            group: kafka.effective_group_id(namespace, &name),
            name,
            sql: spec
                .transform
                .as_ref()
                .and_then(|t| t.sql.as_deref())
                .map(SqlTransform::new),
            policy: spec
                .errors
                .as_ref()
                .map_or(OnBadRecord::Fail, |e| e.on_bad_record),
            want_key: cols.contains(&MetadataColumn::Key),
            want_headers: cols.contains(&MetadataColumn::Headers),
            cols,
            bounded: spec.is_bounded(),
            ending_offsets: kafka.ending_offsets.is_some(),
            // A zero interval is refused by validation; never let one reach a timer.
            interval: validate::parse_duration(trigger.effective_interval())
                .filter(|d| !d.is_zero())
                .unwrap_or(Duration::from_secs(10)),
            max_records: kafka.max_records_per_batch,
            max_bytes: kafka.max_bytes_per_batch,
            on_data_loss: kafka.on_data_loss,
            topics: kafka.topics.clone(),
            event_time: spec.event_time.as_ref().map(|e| {
                (
                    e.column.clone(),
                    validate::parse_duration(&e.allowed_lateness)
                        .unwrap_or_default()
                        .min(validate::MAX_ALLOWED_LATENESS),
                )
            }),
        }
    }
}
