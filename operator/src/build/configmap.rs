//! Pure: the ConfigMap holding the pipeline file the workers run, and its hash.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use spillway_api::{StreamingPipeline, defaults};

use super::{CONFIG_DIR, child_meta, configmap_name};
use crate::validate::ValidPipeline;

/// Key (and file name under [`CONFIG_DIR`]) of the pipeline file.
pub const PIPELINE_FILE: &str = "pipeline.yaml";
/// Where a `configMapKeyRef` writer schema is mounted, relative to [`CONFIG_DIR`].
pub const WRITER_SCHEMA_FILE: &str = "schemas/writer.avsc";
/// Where a `configMapKeyRef` reader schema is mounted, relative to [`CONFIG_DIR`].
pub const READER_SCHEMA_FILE: &str = "schemas/reader.avsc";
/// Where a `configMapKeyRef` Protobuf descriptor set is mounted, relative to [`CONFIG_DIR`].
pub const DESCRIPTOR_SET_FILE: &str = "schemas/descriptors.pb";

const HEADER: &str = "# Written by spillway-operator from the StreamingPipeline of the same name; edit that instead.\n";

/// Renders the manifest the worker runs (`spillway run -f`): the pipeline's spec without
/// the pod settings (`replicas`, `suspend`, `worker`, so scaling does not roll the pods),
/// with `configMapKeyRef` schemas turned into the files they are mounted as.
pub fn render_config(v: &ValidPipeline) -> Result<String, serde_yaml::Error> {
    let mut spec = v.spec.clone();
    spec.replicas = defaults::REPLICAS;
    spec.suspend = false;
    spec.worker = None;
    if let Some(w) = spec.format.writer_schema_mut()
        && w.config_map_key_ref.take().is_some()
    {
        w.file = Some(format!("{CONFIG_DIR}/{WRITER_SCHEMA_FILE}"));
    }
    if let Some(r) = spec.format.row_schema_mut()
        && r.config_map_key_ref.take().is_some()
    {
        r.file = Some(format!("{CONFIG_DIR}/{READER_SCHEMA_FILE}"));
    }
    if let Some(d) = spec.format.descriptor_set_mut()
        && d.config_map_key_ref.take().is_some()
    {
        d.file = Some(format!("{CONFIG_DIR}/{DESCRIPTOR_SET_FILE}"));
    }
    let mut p = StreamingPipeline::new(&v.name, spec);
    p.metadata.namespace = Some(v.namespace.clone());
    Ok(format!("{HEADER}{}", serde_yaml::to_string(&p)?))
}

/// A stable 64-bit FNV-1a hash of the pipeline file, as 16 hex digits.
pub fn config_hash(text: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// The ConfigMap `<name>-pipeline` with the rendered pipeline file.
pub fn build_configmap(v: &ValidPipeline, pipeline_yaml: String) -> ConfigMap {
    ConfigMap {
        metadata: child_meta(v, configmap_name(&v.name)),
        data: Some(BTreeMap::from([(PIPELINE_FILE.to_string(), pipeline_yaml)])),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate::{tests::pipeline, validate};
    use spillway_api::{AvroEncoding, ConfigMapKeyRef, SchemaSource, WorkerSpec};

    #[test]
    fn the_rendered_file_is_a_valid_manifest_of_the_same_pipeline() {
        let v = validate(&pipeline()).unwrap();
        let yaml = render_config(&v).unwrap();
        let p = spillway_api::manifest::parse(&yaml).unwrap();
        assert_eq!(p.metadata.name.as_deref(), Some("events"));
        assert_eq!(p.metadata.namespace.as_deref(), Some("analytics"));
        assert_eq!(p.spec, v.spec);
        assert!(spillway_api::validate::validate(&p.spec).is_ok());
        let cm = build_configmap(&v, yaml.clone());
        assert_eq!(cm.data.unwrap()[PIPELINE_FILE], yaml);
    }

    #[test]
    fn pod_settings_do_not_change_the_hash_but_the_spec_does() {
        let base = validate(&pipeline()).unwrap();
        let hash = |v: &ValidPipeline| config_hash(&render_config(v).unwrap());
        let mut scaled = base.clone();
        scaled.spec.replicas = 5;
        scaled.spec.suspend = true;
        scaled.spec.worker = Some(WorkerSpec {
            image: Some("x:1".into()),
            ..Default::default()
        });
        assert_eq!(hash(&base), hash(&scaled));
        let mut changed = base.clone();
        changed.spec.source.kafka.max_records_per_batch = 7;
        assert_ne!(hash(&base), hash(&changed));
        assert_eq!(hash(&base).len(), 16);
    }

    #[test]
    fn configmap_schemas_become_mounted_files() {
        let mut v = validate(&pipeline()).unwrap();
        v.spec.format.avro.as_mut().unwrap().encoding = AvroEncoding::Raw;
        v.spec.format.avro.as_mut().unwrap().schema_registry = None;
        v.spec.format.avro.as_mut().unwrap().writer_schema = Some(SchemaSource {
            config_map_key_ref: Some(ConfigMapKeyRef {
                name: "schemas".into(),
                key: "hsutest.avsc".into(),
            }),
            ..Default::default()
        });
        let p = spillway_api::manifest::parse(&render_config(&v).unwrap()).unwrap();
        let w = p.spec.format.avro.unwrap().writer_schema.unwrap();
        assert_eq!(w.config_map_key_ref, None);
        assert_eq!(w.file.as_deref(), Some("/etc/spillway/schemas/writer.avsc"));
    }

    #[test]
    fn a_configmap_descriptor_set_becomes_its_mounted_file() {
        let mut v = validate(&pipeline()).unwrap();
        v.spec.format = spillway_api::FormatSpec::protobuf(spillway_api::ProtobufFormat {
            encoding: spillway_api::ProtobufEncoding::Raw,
            message_type: "shop.v1.Order".into(),
            schema: None,
            descriptor_set: Some(spillway_api::DescriptorSetSource {
                file: None,
                config_map_key_ref: Some(ConfigMapKeyRef {
                    name: "protos".into(),
                    key: "shop.pb".into(),
                }),
            }),
            schema_registry: None,
        });
        let p = spillway_api::manifest::parse(&render_config(&v).unwrap()).unwrap();
        let d = p.spec.format.descriptor_set().unwrap();
        assert_eq!(d.config_map_key_ref, None);
        assert_eq!(
            d.file.as_deref(),
            Some("/etc/spillway/schemas/descriptors.pb")
        );
    }

    #[test]
    fn fnv_hash_is_stable() {
        assert_eq!(config_hash(""), "cbf29ce484222325");
        assert_eq!(config_hash("a"), "af63dc4c8601ec8c");
    }
}
