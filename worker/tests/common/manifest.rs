//! The tests' `StreamingPipeline` manifests, built as JSON and rendered as YAML: one builder
//! instead of the same YAML pasted into every test.
//!
//! ```ignore
//! let text = Manifest::hsutest(&topic)
//!     .kafka("maxRecordsPerBatch", 5000)
//!     .metadata_columns(&["partition", "offset"])
//!     .delta(&table)
//!     .checkpoint(&checkpoint)
//!     .available_now()
//!     .yaml();
//! ```

use std::ffi::OsStr;

use serde_json::{Value, json};
use spillway_api::manifest::{API_VERSION, KIND};

/// A `StreamingPipeline` manifest under construction. Each method sets one part of it and
/// leaves the rest as it was; what no method sets is absent, so the pipeline's defaults
/// apply. [`Manifest::set`] reaches any other field.
#[derive(Debug, Clone)]
pub struct Manifest(Value);

impl Manifest {
    /// A pipeline named `topic` that reads `topic` from the test broker
    /// (`spillway_e2e::kafka_bootstrap()`), with no format, sink, checkpoint or trigger yet.
    pub fn new(topic: &str) -> Self {
        Self(json!({
            "apiVersion": API_VERSION,
            "kind": KIND,
            "metadata": {"name": topic},
            "spec": {
                "source": {"kafka": {
                    "bootstrapServers": spillway_e2e::kafka_bootstrap(),
                    "topics": [topic],
                }},
            },
        }))
    }

    /// A manifest file's text (a sample's), to change for a test.
    pub fn from_yaml(text: &str) -> Self {
        Self(serde_yaml::from_str(text).unwrap())
    }

    /// [`Manifest::new`] with raw Avro HsuTestEvents
    /// (`spillway_worker::tools::generate::HSUTEST_SCHEMA`), what `spillway produce` writes.
    pub fn hsutest(topic: &str) -> Self {
        Self::new(topic).raw_avro(spillway_worker::tools::generate::HSUTEST_SCHEMA)
    }

    /// `metadata.name` (by default the topic): the consumer group and the sink's owner.
    pub fn name(self, name: &str) -> Self {
        self.set("/metadata/name", name)
    }

    /// One field of `spec.source.kafka`, e.g. `("maxRecordsPerBatch", 5000)`.
    pub fn kafka(self, field: &str, value: impl Into<Value>) -> Self {
        self.set(&format!("/spec/source/kafka/{field}"), value)
    }

    /// `spec.format.avro`: raw Avro with `schema` as the inline writer schema.
    pub fn raw_avro(self, schema: &str) -> Self {
        self.avro(json!({"encoding": "raw", "writerSchema": {"inline": schema}}))
    }

    /// `spec.format.avro` as given, e.g. the Confluent wire format with a registry.
    pub fn avro(self, avro: Value) -> Self {
        self.set("/spec/format/avro", avro)
    }

    /// `spec.transform.metadataColumns`.
    pub fn metadata_columns(self, columns: &[&str]) -> Self {
        self.set("/spec/transform/metadataColumns", columns)
    }

    /// `spec.sink`: a Delta table at `uri` (a local path or a URI).
    pub fn delta(self, uri: impl AsRef<OsStr>) -> Self {
        self.sink(json!({"delta": {"uri": text(uri)}}))
    }

    /// `spec.sink`: a Parquet dataset at `uri` (a local path or a URI).
    pub fn parquet(self, uri: impl AsRef<OsStr>) -> Self {
        self.sink(json!({"parquet": {"uri": text(uri)}}))
    }

    /// `spec.sink` as given.
    pub fn sink(self, sink: Value) -> Self {
        self.set("/spec/sink", sink)
    }

    /// `spec.checkpoint` at `uri` (a local path or a URI).
    pub fn checkpoint(self, uri: impl AsRef<OsStr>) -> Self {
        self.set("/spec/checkpoint", json!({"uri": text(uri)}))
    }

    /// `spec.trigger`: `availableNow`.
    pub fn available_now(self) -> Self {
        self.trigger(json!({"availableNow": true}))
    }

    /// `spec.trigger`: a batch every `every` (a duration such as `200ms` or `1h`).
    pub fn interval(self, every: &str) -> Self {
        self.trigger(json!({"interval": every}))
    }

    /// `spec.trigger` as given.
    pub fn trigger(self, trigger: Value) -> Self {
        self.set("/spec/trigger", trigger)
    }

    /// `spec.storage` as given, e.g. [`s3_storage`].
    pub fn storage(self, storage: Value) -> Self {
        self.set("/spec/storage", storage)
    }

    /// Sets the value at a JSON pointer (`/spec/errors`, `/spec/sink/delta/partitionBy`),
    /// replacing what was there and creating the objects on the way.
    pub fn set(mut self, pointer: &str, value: impl Into<Value>) -> Self {
        let mut at = &mut self.0;
        for key in keys(pointer) {
            at = at
                .as_object_mut()
                .unwrap_or_else(|| panic!("{pointer}: {key} is not in an object"))
                .entry(key)
                .or_insert_with(|| json!({}));
        }
        *at = value.into();
        self
    }

    /// Removes the value at a JSON pointer, which must be there.
    pub fn remove(mut self, pointer: &str) -> Self {
        let (parent, last) = pointer
            .rsplit_once('/')
            .unwrap_or_else(|| panic!("{pointer}: not a JSON pointer"));
        let removed = self
            .0
            .pointer_mut(parent)
            .and_then(Value::as_object_mut)
            .and_then(|o| o.remove(&unescape(last)));
        assert!(removed.is_some(), "{pointer}: nothing to remove");
        self
    }

    /// The manifest as YAML text, what `spillway run -f` reads.
    pub fn yaml(&self) -> String {
        serde_yaml::to_string(&self.0).unwrap()
    }
}

/// `spec.storage` for moto, credentials by reference (see [`super::S3_SECRETS`]).
pub fn s3_storage() -> Value {
    json!({
        "region": "us-east-1",
        "endpoint": spillway_e2e::s3_endpoint(),
        "allowHttp": true,
        "pathStyle": true,
        "credentialsSecretRef": {
            "accessKeyId": {"name": "s3", "key": "id"},
            "secretAccessKey": {"name": "s3", "key": "key"},
        },
    })
}

fn text(uri: impl AsRef<OsStr>) -> String {
    uri.as_ref().to_string_lossy().into_owned()
}

/// The keys of a JSON pointer (RFC 6901), unescaped.
fn keys(pointer: &str) -> impl Iterator<Item = String> + '_ {
    assert!(pointer.starts_with('/'), "{pointer}: not a JSON pointer");
    pointer.split('/').skip(1).map(unescape)
}

fn unescape(key: &str) -> String {
    key.replace("~1", "/").replace("~0", "~")
}
