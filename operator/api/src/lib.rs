//! The `spillway.dev/v1alpha1` `StreamingPipeline` API: types, defaults, rules and validation.
//!
//! # Layout
//! - [`pipeline`]: the custom resource root and its top-level spec (trigger, event time).
//! - [`source`]: `spec.source.kafka` — brokers, topics, starting offsets, security.
//! - [`format`]: `spec.format` — Avro (encoding, registry, writer and reader schemas) or
//!   JSON (row schema, mismatch mode).
//! - [`sink`]: `spec.sink`, `spec.checkpoint`, `spec.storage`, `spec.errors`.
//! - [`runtime`]: `spec.worker` pod settings and `spec.maintenance` schedules.
//! - [`status`]: `status`, its conditions and Spark-style `StreamingQueryProgress`.
//! - [`report`]: the worker's `/progress` document and termination message, which the
//!   operator reads (the one contract between the two binaries).
//! - [`defaults`]: every default value, in one place; the CRD schema carries the same values.
//! - [`rules`]: the CEL rules of the CRD and their messages, shared with [`validate`].
//! - [`validate`]: pure: the same invariants in Rust, with field paths, for clusterless use.
//! - [`manifest`]: pure: parses a manifest (YAML/JSON) into a resource with field-path errors.
//! - [`crd`]: pure: renders the CRD YAML (the one generator behind `crds/`).
//!
//! This crate has no Kubernetes client: the operator and the worker both depend on it.

pub mod crd;
pub mod defaults;
pub mod format;
pub mod manifest;
pub mod pipeline;
pub mod report;
pub mod rules;
pub mod runtime;
pub mod sink;
pub mod source;
pub mod status;
pub mod validate;

pub use format::*;
pub use pipeline::*;
pub use runtime::*;
pub use sink::*;
pub use source::*;
pub use status::*;

/// A reference to one key of a Kubernetes Secret in the pipeline's namespace.
///
/// Credentials are only ever referenced: in a cluster the operator wires the key into the
/// worker as a `secretKeyRef` environment variable; locally `spillway run` reads the
/// environment variable named by [`SecretKeyRef::env_var`].
#[derive(
    serde::Serialize, serde::Deserialize, schemars::JsonSchema, Clone, Debug, PartialEq, Eq,
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretKeyRef {
    /// Name of the Secret in the pipeline's namespace.
    #[schemars(length(min = 1))]
    pub name: String,
    /// Key within the Secret whose value is used.
    #[schemars(length(min = 1))]
    pub key: String,
}

impl SecretKeyRef {
    /// The environment variable that carries this secret's value in the worker:
    /// `SPILLWAY_SECRET_<NAME>_<KEY>`, upper-cased, non-alphanumerics as `_`.
    pub fn env_var(&self) -> String {
        let norm = |s: &str| {
            s.chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() {
                        c.to_ascii_uppercase()
                    } else {
                        '_'
                    }
                })
                .collect::<String>()
        };
        format!("SPILLWAY_SECRET_{}_{}", norm(&self.name), norm(&self.key))
    }
}

/// A reference to one key of a ConfigMap in the pipeline's namespace.
#[derive(
    serde::Serialize, serde::Deserialize, schemars::JsonSchema, Clone, Debug, PartialEq, Eq,
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConfigMapKeyRef {
    /// Name of the ConfigMap in the pipeline's namespace.
    #[schemars(length(min = 1))]
    pub name: String,
    /// Key within the ConfigMap.
    #[schemars(length(min = 1))]
    pub key: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_env_var_is_normalised() {
        let r = SecretKeyRef {
            name: "kafka-creds".into(),
            key: "sasl.password".into(),
        };
        assert_eq!(r.env_var(), "SPILLWAY_SECRET_KAFKA_CREDS_SASL_PASSWORD");
    }
}
