//! Pure: checks a `StreamingPipeline` — `spillway validate`'s checks plus the in-cluster
//! ones — and returns the [`ValidPipeline`] the builders take.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::{Resource, ResourceExt};
use spillway_api::validate::{Problem, Problems};
use spillway_api::{StreamingPipeline, StreamingPipelineSpec};

/// The longest pipeline name: children and the Service are named after it (DNS-1035 label).
pub const MAX_NAME_LEN: usize = 63;

/// A pipeline whose spec passed every check, with what the builders need from its metadata.
#[derive(Clone, Debug, PartialEq)]
pub struct ValidPipeline {
    /// `metadata.name`.
    pub name: String,
    /// `metadata.namespace`.
    pub namespace: String,
    /// `metadata.generation`.
    pub generation: Option<i64>,
    /// The controller owner reference every child carries.
    pub owner: OwnerReference,
    /// The spec.
    pub spec: StreamingPipelineSpec,
}

/// Checks a pipeline; the error lists every problem with its field path.
pub fn validate(p: &StreamingPipeline) -> Result<ValidPipeline, Problems> {
    let mut problems = match spillway_api::validate::validate(&p.spec) {
        Ok(()) => vec![],
        Err(Problems(v)) => v,
    };
    problems.extend(cluster_problems(p));
    let namespace = p.namespace().unwrap_or_default();
    let owner = p.controller_owner_ref(&());
    match owner {
        Some(owner) if problems.is_empty() && !namespace.is_empty() => Ok(ValidPipeline {
            name: p.name_any(),
            namespace,
            generation: p.meta().generation,
            owner,
            spec: p.spec.clone(),
        }),
        _ => {
            if namespace.is_empty() {
                problems.push(problem("metadata.namespace", "is required"));
            }
            if problems.is_empty() {
                problems.push(problem("metadata.uid", "is required"));
            }
            Err(Problems(problems))
        }
    }
}

fn problem(path: &str, message: &str) -> Problem {
    Problem {
        path: path.into(),
        message: message.into(),
    }
}

/// Checks that only matter in a cluster: the name is a DNS-1035 label (it names the
/// Service), and schemas come inline or from a ConfigMap (a worker pod has no manifest
/// directory to resolve `file` against).
fn cluster_problems(p: &StreamingPipeline) -> Vec<Problem> {
    let mut out = vec![];
    let name = p.name_any();
    let dns_label = name.len() <= MAX_NAME_LEN
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && !name.ends_with('-')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !dns_label {
        out.push(problem(
            "metadata.name",
            "must be at most 63 lowercase letters, digits or '-', start with a letter and not end with '-' (it names the worker Service)",
        ));
    }
    const FILE: &str =
        "file schemas are for local runs: in a cluster use inline or configMapKeyRef";
    if p.spec
        .format
        .avro
        .as_ref()
        .and_then(|a| a.writer_schema.as_ref())
        .is_some_and(|s| s.file.is_some())
    {
        out.push(problem("spec.format.avro.writerSchema.file", FILE));
    }
    if let Some((path, r)) = p.spec.format.row_schema()
        && r.file.is_some()
    {
        out.push(problem(&format!("{path}.file"), FILE));
    }
    if p.spec
        .format
        .descriptor_set()
        .is_some_and(|d| d.file.is_some())
    {
        out.push(problem("spec.format.protobuf.descriptorSet.file", FILE));
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use spillway_api::SchemaSource;

    pub(crate) const MINIMAL: &str = r#"
apiVersion: spillway.dev/v1alpha1
kind: StreamingPipeline
metadata: {name: events, namespace: analytics, uid: 0000-1111, generation: 1}
spec:
  source: {kafka: {bootstrapServers: "k:9092", topics: [t]}}
  format: {avro: {encoding: confluent, schemaRegistry: {url: "http://r:8081"}}}
  sink: {delta: {uri: "s3://lake/t"}}
  checkpoint: {uri: "s3://lake/c"}
"#;

    pub(crate) fn pipeline() -> StreamingPipeline {
        spillway_api::manifest::parse(MINIMAL).unwrap()
    }

    #[test]
    fn a_valid_pipeline_carries_its_owner() {
        let v = validate(&pipeline()).unwrap();
        assert_eq!(v.name, "events");
        assert_eq!(v.namespace, "analytics");
        assert_eq!(v.owner.uid, "0000-1111");
        assert_eq!(v.owner.controller, Some(true));
        assert_eq!(v.owner.kind, "StreamingPipeline");
    }

    #[test]
    fn problems_carry_field_paths() {
        type Edit = fn(&mut StreamingPipeline);
        let cases: &[(Edit, &str)] = &[
            (|p| p.spec.replicas = -1, "spec.replicas"),
            (
                |p| p.spec.source.kafka.topics = Some(vec!["bad topic".into()]),
                "spec.source.kafka.topics[0]",
            ),
            (|p| p.metadata.name = Some("Events".into()), "metadata.name"),
            (|p| p.metadata.name = Some("e".repeat(64)), "metadata.name"),
            (|p| p.metadata.namespace = None, "metadata.namespace"),
            (|p| p.metadata.uid = None, "metadata.uid"),
            (
                |p| {
                    p.spec.format.avro.as_mut().unwrap().encoding = spillway_api::AvroEncoding::Raw;
                    p.spec.format.avro.as_mut().unwrap().writer_schema = Some(SchemaSource {
                        file: Some("s.avsc".into()),
                        ..Default::default()
                    });
                },
                "spec.format.avro.writerSchema.file",
            ),
        ];
        for (edit, path) in cases {
            let mut p = pipeline();
            edit(&mut p);
            let Problems(problems) = validate(&p).unwrap_err();
            assert!(
                problems.iter().any(|x| x.path == *path),
                "{path}: {problems:?}"
            );
        }
    }
}
