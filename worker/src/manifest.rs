//! I/O: loads a pipeline manifest from disk and validates it completely.

use std::path::{Path, PathBuf};

use spillway_api::StreamingPipeline;
use spillway_api::validate::{self, Problem};

/// Why a manifest file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The file could not be read.
    #[error("failed to read {path}: {source}")]
    Read {
        /// The manifest path.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a StreamingPipeline.
    #[error("{path}: {source}")]
    Parse {
        /// The manifest path.
        path: PathBuf,
        /// Why it does not parse.
        #[source]
        source: spillway_api::manifest::ManifestError,
    },
    /// The pipeline breaks invariants; every problem is listed.
    #[error("{path}: invalid pipeline: {}", problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Invalid {
        /// The manifest path.
        path: PathBuf,
        /// Each problem with its field path.
        problems: Vec<Problem>,
    },
}

impl ManifestError {
    /// The problems as (path, message) lines, one per problem.
    pub fn problems(&self) -> Vec<Problem> {
        match self {
            Self::Read { source, .. } => vec![Problem {
                path: String::new(),
                message: source.to_string(),
            }],
            Self::Parse { source, .. } => vec![Problem {
                path: source.path().to_string(),
                message: match source {
                    spillway_api::manifest::ManifestError::Shape { message, .. } => message.clone(),
                    other => other.to_string(),
                },
            }],
            Self::Invalid { problems, .. } => problems.clone(),
        }
    }
}

/// A manifest that parsed and passed every check.
#[derive(Debug, Clone)]
pub struct LoadedPipeline {
    /// The resource, with defaults applied.
    pub pipeline: StreamingPipeline,
    /// The directory relative `file:` schema paths resolve against.
    pub base_dir: PathBuf,
}

/// What is wrong with a schema text: not JSON, or (a JSON row schema) not one that maps to
/// columns.
fn schema_problem(text: &str, json_rows: bool, field: &str) -> Option<String> {
    if serde_json::from_str::<serde_json::Value>(text).is_err() {
        return Some("is not valid JSON (an Avro schema or JSON Schema is JSON)".into());
    }
    if json_rows && field == "spec.format.json.schema" {
        return crate::decode::JsonPlan::from_schema(text)
            .err()
            .map(|e| e.to_string());
    }
    None
}

/// What a local run can check of a Protobuf format: the `.proto` source (inline or file)
/// compiles, or the descriptor set file reads, and either holds `messageType` as columns.
fn protobuf_problems(p: &spillway_api::ProtobufFormat, base_dir: &Path) -> Vec<Problem> {
    use crate::decode::ProtoPlan;
    use crate::decode::protobuf::compile_proto;
    let name = p.message_type.trim_start_matches('.');
    let from_source = |file: &str, text: &str| {
        compile_proto(file, text, &[]).and_then(|pool| ProtoPlan::from_pool(&pool, name))
    };
    let mut out = Vec::new();
    let mut check = |path: String, result: Result<ProtoPlan, String>| {
        if let Err(message) = result {
            out.push(Problem { path, message });
        }
    };
    let base = "spec.format.protobuf";
    if let Some(s) = &p.schema {
        if let Some(text) = &s.inline {
            check(
                format!("{base}.schema.inline"),
                from_source("schema.proto", text).map_err(|e| e.to_string()),
            );
        }
        if let Some(file) = &s.file {
            let result = std::fs::read_to_string(base_dir.join(file))
                .map_err(|e| format!("cannot read {file}: {e}"))
                .and_then(|text| {
                    let name = Path::new(file)
                        .file_name()
                        .and_then(|n| n.to_str())
                        .unwrap_or("schema.proto");
                    from_source(name, &text).map_err(|e| format!("{file}: {e}"))
                });
            check(format!("{base}.schema.file"), result);
        }
    }
    if let Some(file) = p.descriptor_set.as_ref().and_then(|d| d.file.as_ref()) {
        let result = std::fs::read(base_dir.join(file))
            .map_err(|e| format!("cannot read {file}: {e}"))
            .and_then(|bytes| {
                ProtoPlan::from_descriptor_set(&bytes, name).map_err(|e| format!("{file}: {e}"))
            });
        check(format!("{base}.descriptorSet.file"), result);
    }
    out
}

/// Parses and validates the manifest text; `base_dir` resolves relative schema files.
pub fn load_str(text: &str, path: &Path, base_dir: &Path) -> Result<LoadedPipeline, ManifestError> {
    let pipeline = spillway_api::manifest::parse(text).map_err(|source| ManifestError::Parse {
        path: path.to_path_buf(),
        source,
    })?;
    let mut problems = match validate::validate(&pipeline.spec) {
        Ok(()) => Vec::new(),
        Err(p) => p.0,
    };
    let format = &pipeline.spec.format;
    let writer = format.avro.as_ref().and_then(|a| a.writer_schema.as_ref());
    let mut texts = Vec::new();
    if let Some(file) = writer.and_then(|w| w.file.as_ref()) {
        texts.push(("spec.format.avro.writerSchema".to_string(), file));
    }
    if let Some((field, r)) = format.row_schema()
        && let Some(file) = &r.file
        && format.protobuf.is_none()
    {
        texts.push((field.to_string(), file));
    }
    for (field, file) in texts {
        let full = base_dir.join(file);
        match std::fs::read_to_string(&full) {
            Ok(text) => {
                if let Some(message) = schema_problem(&text, format.json.is_some(), &field) {
                    problems.push(Problem {
                        path: format!("{field}.file"),
                        message: format!("{file}: {message}"),
                    });
                }
            }
            Err(e) => problems.push(Problem {
                path: format!("{field}.file"),
                message: format!("cannot read {file}: {e}"),
            }),
        }
    }
    if let Some(j) = &format.json
        && let Some(text) = &j.schema.inline
        && let Some(message) = schema_problem(text, true, "spec.format.json.schema")
    {
        problems.push(Problem {
            path: "spec.format.json.schema.inline".into(),
            message,
        });
    }
    if let Some(p) = &format.protobuf {
        problems.extend(protobuf_problems(p, base_dir));
    }
    if problems.is_empty() {
        Ok(LoadedPipeline {
            pipeline,
            base_dir: base_dir.to_path_buf(),
        })
    } else {
        Err(ManifestError::Invalid {
            path: path.to_path_buf(),
            problems,
        })
    }
}

/// Reads, parses and validates a manifest file.
pub fn load(path: &Path) -> Result<LoadedPipeline, ManifestError> {
    let text = std::fs::read_to_string(path).map_err(|source| ManifestError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
    load_str(&text, path, &base)
}
