//! Pure: parses a `StreamingPipeline` manifest (YAML or JSON) with field-path errors.

use crate::StreamingPipeline;

/// API version of the resource.
pub const API_VERSION: &str = "spillway.dev/v1alpha1";
/// Kind of the resource.
pub const KIND: &str = "StreamingPipeline";

/// Why a manifest could not be read as a `StreamingPipeline`.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// Not YAML at all.
    #[error("manifest is not valid yaml: {0}")]
    Syntax(#[source] serde_yaml::Error),
    /// YAML, but not a StreamingPipeline document.
    #[error("{path}: {message}")]
    Shape {
        /// Dotted field path of the offending field.
        path: String,
        /// What is wrong with it.
        message: String,
    },
}

impl ManifestError {
    /// The field path the error is about (empty for syntax errors).
    pub fn path(&self) -> &str {
        match self {
            Self::Syntax(_) => "",
            Self::Shape { path, .. } => path,
        }
    }
}

fn shape(path: &str, message: impl Into<String>) -> ManifestError {
    ManifestError::Shape {
        path: path.to_string(),
        message: message.into(),
    }
}

/// Parses one manifest document. Serde defaults fill omitted fields (see `defaults`).
pub fn parse(text: &str) -> Result<StreamingPipeline, ManifestError> {
    let value: serde_yaml::Value = serde_yaml::from_str(text).map_err(ManifestError::Syntax)?;
    let api_version = value.get("apiVersion").and_then(|v| v.as_str());
    if api_version != Some(API_VERSION) {
        return Err(shape(
            "apiVersion",
            format!(
                "must be {API_VERSION}, found {}",
                api_version.unwrap_or("nothing")
            ),
        ));
    }
    let kind = value.get("kind").and_then(|v| v.as_str());
    if kind != Some(KIND) {
        return Err(shape(
            "kind",
            format!("must be {KIND}, found {}", kind.unwrap_or("nothing")),
        ));
    }
    if value
        .get("metadata")
        .and_then(|m| m.get("name"))
        .and_then(|n| n.as_str())
        .is_none_or(str::is_empty)
    {
        return Err(shape("metadata.name", "is required"));
    }
    serde_path_to_error::deserialize::<_, StreamingPipeline>(value).map_err(|e| {
        let path = e.path().to_string();
        let path = if path == "." { String::new() } else { path };
        shape(&path, e.into_inner().to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
apiVersion: spillway.dev/v1alpha1
kind: StreamingPipeline
metadata: {name: p}
spec:
  source: {kafka: {bootstrapServers: "k:9092", topics: [t]}}
  format: {avro: {encoding: confluent, schemaRegistry: {url: "http://r:8081"}}}
  sink: {delta: {uri: /tmp/t}}
  checkpoint: {uri: /tmp/c}
"#;

    #[test]
    fn defaults_are_filled() {
        let p = parse(MINIMAL).unwrap();
        assert_eq!(p.spec.replicas, 1);
        assert_eq!(p.spec.source.kafka.max_records_per_batch, 500_000);
        assert_eq!(p.spec.effective_trigger().effective_interval(), "10s");
        assert_eq!(
            p.spec.format.avro.unwrap().schema_registry.unwrap().timeout,
            "10s"
        );
    }

    #[test]
    fn shape_errors_carry_paths() {
        let cases = [
            (
                MINIMAL.replace("encoding: confluent", "encoding: protobuf"),
                "spec.format.avro.encoding",
            ),
            (
                MINIMAL.replace("topics: [t]", "topics: [t], colour: red"),
                "spec.source.kafka.colour",
            ),
            (
                MINIMAL.replace("kind: StreamingPipeline", "kind: Deployment"),
                "kind",
            ),
            (
                MINIMAL.replace(
                    "sink: {delta: {uri: /tmp/t}}",
                    "sink: {delta: {uri: /t, mode: upsert}}",
                ),
                "spec.sink.delta.mode",
            ),
        ];
        for (text, path) in cases {
            let err = parse(&text).unwrap_err();
            assert_eq!(err.path(), path, "{err}");
        }
    }
}
