//! Pure: the worker Deployment — restricted Pod Security profile, read-only root filesystem,
//! probes, the pipeline file and schemas mounted, secrets wired as `secretKeyRef` env.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMapProjection, Container, ContainerPort, EmptyDirVolumeSource, EnvVar,
    EnvVarSource, HTTPGetAction, KeyToPath, ObjectFieldSelector, PodSecurityContext, PodSpec,
    PodTemplateSpec, Probe, ProjectedVolumeSource, SeccompProfile, SecretKeySelector,
    SecurityContext, Volume, VolumeMount, VolumeProjection,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use spillway_api::defaults::WORKER_HTTP_PORT;
use spillway_api::{ConfigMapKeyRef, SecretKeyRef, StreamingPipelineSpec, WorkerSpec};

use super::{
    DESCRIPTOR_SET_FILE, PIPELINE_FILE, READER_SCHEMA_FILE, WRITER_SCHEMA_FILE, child_meta,
    configmap_name, selector_labels,
};
use crate::validate::ValidPipeline;

/// Where the pipeline file and mounted schemas are.
pub const CONFIG_DIR: &str = "/etc/spillway";
/// The writable scratch directory (an emptyDir; the root filesystem is read-only).
pub const TMP_DIR: &str = "/tmp";
/// The worker container's name.
pub const CONTAINER_NAME: &str = "worker";
/// The named port of the worker's HTTP server (`/progress`, `/metrics`, probes).
pub const HTTP_PORT_NAME: &str = "http";
/// Pod-template annotation with the pipeline file's hash: a spec change rolls the pods.
pub const CONFIG_HASH_ANNOTATION: &str = "spillway.dev/config-hash";
/// The non-root user and group the worker runs as (distroless `nonroot`).
pub const RUN_AS: i64 = 65532;
/// The environment variable with the pod's IP (downward API), expanded in the worker's
/// `--http` argument.
pub const POD_IP_ENV: &str = "POD_IP";
/// Where the worker writes its final state, which the kubelet keeps in the container's
/// status as the termination message (the Kubernetes default path).
pub const TERMINATION_MESSAGE_PATH: &str = "/dev/termination-log";
/// Seconds a worker gets to finish its batch after SIGTERM.
pub const TERMINATION_GRACE_SECONDS: i64 = 60;

const CONFIG_VOLUME: &str = "config";
const TMP_VOLUME: &str = "tmp";

/// The worker Deployment, named after the pipeline; `replicas` is 0 when suspended.
pub fn build_deployment(v: &ValidPipeline, config_hash: &str) -> Deployment {
    Deployment {
        metadata: child_meta(v, v.name.clone()),
        spec: DeploymentSpec {
            replicas: Some(v.spec.effective_replicas()),
            selector: LabelSelector {
                match_labels: Some(selector_labels(&v.name)),
                ..Default::default()
            },
            template: build_pod_template(v, config_hash, None),
            revision_history_limit: Some(3),
            ..Default::default()
        },
        ..Default::default()
    }
}

/// The worker pod template of the Deployment (`restart_policy` `None`: the default,
/// `Always`) and of the Job of an `availableNow` pipeline (`Never`).
pub fn build_pod_template(
    v: &ValidPipeline,
    config_hash: &str,
    restart_policy: Option<&str>,
) -> PodTemplateSpec {
    let worker = v.spec.worker.clone().unwrap_or_default();
    let mut labels = worker.labels.clone();
    labels.extend(selector_labels(&v.name));
    let mut annotations = worker.annotations.clone();
    annotations.insert(CONFIG_HASH_ANNOTATION.into(), config_hash.into());

    let pod = PodSpec {
        containers: vec![container(&v.spec, &worker)],
        volumes: Some(vec![config_volume(v), tmp_volume()]),
        service_account_name: worker.service_account_name.clone(),
        automount_service_account_token: Some(false),
        security_context: Some(PodSecurityContext {
            run_as_non_root: Some(true),
            run_as_user: Some(RUN_AS),
            run_as_group: Some(RUN_AS),
            fs_group: Some(RUN_AS),
            seccomp_profile: Some(runtime_default()),
            ..Default::default()
        }),
        node_selector: (!worker.node_selector.is_empty()).then(|| worker.node_selector.clone()),
        tolerations: (!worker.tolerations.is_empty()).then(|| worker.tolerations.clone()),
        affinity: worker.affinity.clone(),
        termination_grace_period_seconds: Some(TERMINATION_GRACE_SECONDS),
        restart_policy: restart_policy.map(Into::into),
        ..Default::default()
    };
    PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(labels),
            annotations: Some(annotations),
            ..Default::default()
        }),
        spec: Some(pod),
    }
}

fn runtime_default() -> SeccompProfile {
    SeccompProfile {
        type_: "RuntimeDefault".into(),
        localhost_profile: None,
    }
}

fn container(spec: &StreamingPipelineSpec, worker: &WorkerSpec) -> Container {
    let probe = |path: &str, period: i32| Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::String(HTTP_PORT_NAME.into()),
            ..Default::default()
        }),
        period_seconds: Some(period),
        timeout_seconds: Some(2),
        failure_threshold: Some(3),
        ..Default::default()
    };
    // The pod's own address: the worker listens there, where the kubelet's probes, the
    // operator (`/progress`) and Prometheus reach it.
    let mut env = vec![EnvVar {
        name: POD_IP_ENV.into(),
        value: None,
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: "status.podIP".into(),
                api_version: None,
            }),
            ..Default::default()
        }),
    }];
    env.extend(secret_env(spec));
    env.extend(worker.env.iter().cloned());
    Container {
        name: CONTAINER_NAME.into(),
        image: Some(worker.effective_image().into()),
        image_pull_policy: worker.image_pull_policy.clone(),
        args: Some(vec![
            "run".into(),
            "-f".into(),
            format!("{CONFIG_DIR}/{PIPELINE_FILE}"),
            format!("--http=$({POD_IP_ENV}):{WORKER_HTTP_PORT}"),
            format!("--termination-log={TERMINATION_MESSAGE_PATH}"),
        ]),
        termination_message_path: Some(TERMINATION_MESSAGE_PATH.into()),
        termination_message_policy: Some("FallbackToLogsOnError".into()),
        ports: Some(vec![ContainerPort {
            name: Some(HTTP_PORT_NAME.into()),
            container_port: WORKER_HTTP_PORT,
            ..Default::default()
        }]),
        env: (!env.is_empty()).then_some(env),
        resources: worker.resources.clone(),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            run_as_non_root: Some(true),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".into()]),
                add: None,
            }),
            seccomp_profile: Some(runtime_default()),
            ..Default::default()
        }),
        liveness_probe: Some(probe("/healthz", 10)),
        readiness_probe: Some(probe("/readyz", 5)),
        volume_mounts: Some(vec![
            VolumeMount {
                name: CONFIG_VOLUME.into(),
                mount_path: CONFIG_DIR.into(),
                read_only: Some(true),
                ..Default::default()
            },
            VolumeMount {
                name: TMP_VOLUME.into(),
                mount_path: TMP_DIR.into(),
                ..Default::default()
            },
        ]),
        ..Default::default()
    }
}

/// Every secret reference of the spec, as `secretKeyRef` env vars named by
/// [`SecretKeyRef::env_var`], sorted and without duplicates. The operator never reads them.
pub fn secret_env(spec: &StreamingPipelineSpec) -> Vec<EnvVar> {
    let mut by_name: BTreeMap<String, &SecretKeyRef> = BTreeMap::new();
    for r in secret_refs(spec) {
        by_name.entry(r.env_var()).or_insert(r);
    }
    by_name
        .into_iter()
        .map(|(name, r)| EnvVar {
            name,
            value: None,
            value_from: Some(EnvVarSource {
                secret_key_ref: Some(SecretKeySelector {
                    name: r.name.clone(),
                    key: r.key.clone(),
                    optional: Some(false),
                }),
                ..Default::default()
            }),
        })
        .collect()
}

fn secret_refs(spec: &StreamingPipelineSpec) -> Vec<&SecretKeyRef> {
    let mut out = vec![];
    if let Some(sec) = &spec.source.kafka.security {
        if let Some(s) = &sec.sasl {
            out.extend([&s.username_secret_ref, &s.password_secret_ref]);
        }
        if let Some(t) = &sec.tls {
            out.extend(
                [&t.ca_secret_ref, &t.cert_secret_ref, &t.key_secret_ref]
                    .into_iter()
                    .flatten(),
            );
        }
    }
    if let Some(auth) = spec
        .format
        .schema_registry()
        .and_then(|r| r.basic_auth.as_ref())
    {
        out.extend([&auth.username_secret_ref, &auth.password_secret_ref]);
    }
    if let Some(c) = spec
        .storage
        .as_ref()
        .and_then(|s| s.credentials_secret_ref.as_ref())
    {
        out.extend([&c.access_key_id, &c.secret_access_key]);
        out.extend(c.session_token.as_ref());
    }
    out
}

/// One projected volume at [`CONFIG_DIR`]: the pipeline file, plus the schemas given by
/// `configMapKeyRef` at the paths the rendered pipeline file names.
fn config_volume(v: &ValidPipeline) -> Volume {
    let project = |name: &str, key: &str, path: &str| VolumeProjection {
        config_map: Some(ConfigMapProjection {
            name: name.into(),
            items: Some(vec![KeyToPath {
                key: key.into(),
                path: path.into(),
                ..Default::default()
            }]),
            optional: Some(false),
        }),
        ..Default::default()
    };
    let mut sources = vec![project(
        &configmap_name(&v.name),
        PIPELINE_FILE,
        PIPELINE_FILE,
    )];
    let format = &v.spec.format;
    let writer: Option<&ConfigMapKeyRef> = format
        .avro
        .as_ref()
        .and_then(|a| a.writer_schema.as_ref())
        .and_then(|s| s.config_map_key_ref.as_ref());
    if let Some(r) = writer {
        sources.push(project(&r.name, &r.key, WRITER_SCHEMA_FILE));
    }
    let reader = format
        .row_schema()
        .and_then(|(_, s)| s.config_map_key_ref.as_ref());
    if let Some(r) = reader {
        sources.push(project(&r.name, &r.key, READER_SCHEMA_FILE));
    }
    if let Some(r) = format
        .descriptor_set()
        .and_then(|d| d.config_map_key_ref.as_ref())
    {
        sources.push(project(&r.name, &r.key, DESCRIPTOR_SET_FILE));
    }
    Volume {
        name: CONFIG_VOLUME.into(),
        projected: Some(ProjectedVolumeSource {
            sources: Some(sources),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn tmp_volume() -> Volume {
    Volume {
        name: TMP_VOLUME.into(),
        empty_dir: Some(EmptyDirVolumeSource::default()),
        ..Default::default()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::validate::{ValidPipeline, tests::pipeline, validate};
    use k8s_openapi::api::core::v1::{ResourceRequirements, Toleration};
    use spillway_api::{
        AvroEncoding, BasicAuth, KafkaSecurity, SaslMechanism, SaslSpec, SchemaSource,
        SecurityProtocol, StorageCredentials, StorageSpec, TlsSpec,
    };

    fn valid() -> ValidPipeline {
        validate(&pipeline()).unwrap()
    }

    fn pod(d: &Deployment) -> &PodSpec {
        d.spec.template.spec.as_ref().unwrap()
    }

    fn secret(name: &str, key: &str) -> SecretKeyRef {
        SecretKeyRef {
            name: name.into(),
            key: key.into(),
        }
    }

    /// The Pod Security "restricted" profile plus a read-only root filesystem.
    pub(crate) fn assert_restricted(p: &PodSpec) {
        let psc = p.security_context.as_ref().unwrap();
        assert_eq!(psc.run_as_non_root, Some(true));
        assert_ne!(psc.run_as_user, Some(0));
        assert_eq!(
            psc.seccomp_profile.as_ref().map(|s| s.type_.as_str()),
            Some("RuntimeDefault")
        );
        assert!(p.host_network.is_none() && p.host_pid.is_none() && p.host_ipc.is_none());
        for c in &p.containers {
            let sc = c.security_context.as_ref().unwrap();
            assert_eq!(sc.allow_privilege_escalation, Some(false), "{}", c.name);
            assert_eq!(sc.read_only_root_filesystem, Some(true), "{}", c.name);
            assert_eq!(sc.run_as_non_root, Some(true));
            assert_ne!(sc.privileged, Some(true));
            let caps = sc.capabilities.as_ref().unwrap();
            assert_eq!(caps.drop.as_deref(), Some(&["ALL".to_string()][..]));
            assert!(caps.add.as_ref().is_none_or(|a| a.is_empty()));
            assert_eq!(
                sc.seccomp_profile.as_ref().map(|s| s.type_.as_str()),
                Some("RuntimeDefault")
            );
        }
        for vol in p.volumes.iter().flatten() {
            assert!(vol.host_path.is_none(), "{}", vol.name);
        }
    }

    #[test]
    fn restricted_profile_and_read_only_root() {
        let d = build_deployment(&valid(), "abc");
        let p = pod(&d);
        assert_restricted(p);
        let c = &p.containers[0];
        let tmp = c
            .volume_mounts
            .iter()
            .flatten()
            .find(|m| m.mount_path == TMP_DIR)
            .unwrap();
        let vol = p
            .volumes
            .iter()
            .flatten()
            .find(|v| v.name == tmp.name)
            .unwrap();
        assert!(vol.empty_dir.is_some());
        assert_eq!(p.automount_service_account_token, Some(false));
    }

    #[test]
    fn probes_args_port_and_config_mount() {
        let d = build_deployment(&valid(), "abc");
        let c = &pod(&d).containers[0];
        assert_eq!(
            c.args.as_deref(),
            Some(
                &[
                    "run".to_string(),
                    "-f".into(),
                    "/etc/spillway/pipeline.yaml".into(),
                    "--http=$(POD_IP):8080".into(),
                    "--termination-log=/dev/termination-log".into(),
                ][..]
            )
        );
        let port = &c.ports.as_ref().unwrap()[0];
        assert_eq!(port.name.as_deref(), Some("http"));
        assert_eq!(port.container_port, WORKER_HTTP_PORT);
        for (probe, path) in [
            (&c.liveness_probe, "/healthz"),
            (&c.readiness_probe, "/readyz"),
        ] {
            let get = probe.as_ref().unwrap().http_get.as_ref().unwrap();
            assert_eq!(get.path.as_deref(), Some(path));
            assert_eq!(get.port, IntOrString::String("http".into()));
        }
        let mount = c
            .volume_mounts
            .iter()
            .flatten()
            .find(|m| m.mount_path == CONFIG_DIR)
            .unwrap();
        assert_eq!(mount.read_only, Some(true));
        assert_eq!(
            c.image.as_deref(),
            Some(spillway_api::defaults::WORKER_IMAGE)
        );
    }

    #[test]
    fn replicas_hash_and_labels() {
        let mut v = valid();
        v.spec.replicas = 3;
        let d = build_deployment(&v, "h1");
        let spec = &d.spec;
        assert_eq!(spec.replicas, Some(3));
        assert_eq!(
            spec.selector.match_labels.as_ref(),
            Some(&selector_labels("events"))
        );
        let meta = spec.template.metadata.as_ref().unwrap();
        assert_eq!(
            meta.annotations.as_ref().unwrap()[CONFIG_HASH_ANNOTATION],
            "h1"
        );
        for (k, val) in selector_labels("events") {
            assert_eq!(meta.labels.as_ref().unwrap()[&k], val);
        }
        v.spec.suspend = true;
        assert_eq!(build_deployment(&v, "h1").spec.replicas, Some(0));
    }

    #[test]
    fn worker_settings_are_applied_but_cannot_override_the_selector() {
        let mut v = valid();
        v.spec.worker = Some(WorkerSpec {
            image: Some("registry/spillway:dev".into()),
            image_pull_policy: Some("IfNotPresent".into()),
            resources: Some(ResourceRequirements::default()),
            env: vec![EnvVar {
                name: "RUST_LOG".into(),
                value: Some("debug".into()),
                value_from: None,
            }],
            node_selector: BTreeMap::from([("pool".into(), "ingest".into())]),
            tolerations: vec![Toleration {
                key: Some("dedicated".into()),
                ..Default::default()
            }],
            affinity: None,
            service_account_name: Some("lake-writer".into()),
            annotations: BTreeMap::from([("team".into(), "data".into())]),
            labels: BTreeMap::from([
                ("tier".into(), "ingest".into()),
                ("app.kubernetes.io/instance".into(), "hijack".into()),
            ]),
        });
        let d = build_deployment(&v, "h");
        let p = pod(&d);
        assert_restricted(p);
        let c = &p.containers[0];
        assert_eq!(c.image.as_deref(), Some("registry/spillway:dev"));
        assert_eq!(c.image_pull_policy.as_deref(), Some("IfNotPresent"));
        assert!(c.resources.is_some());
        assert_eq!(c.env.as_ref().unwrap().last().unwrap().name, "RUST_LOG");
        assert_eq!(p.node_selector.as_ref().unwrap()["pool"], "ingest");
        assert_eq!(p.tolerations.as_ref().unwrap().len(), 1);
        assert_eq!(p.service_account_name.as_deref(), Some("lake-writer"));
        let meta = d.spec.template.metadata.as_ref().unwrap();
        assert_eq!(meta.annotations.as_ref().unwrap()["team"], "data");
        let labels = meta.labels.as_ref().unwrap();
        assert_eq!(labels["tier"], "ingest");
        assert_eq!(labels["app.kubernetes.io/instance"], "events");
    }

    #[test]
    fn every_secret_reference_becomes_a_secret_key_ref_env_var() {
        let mut v = valid();
        v.spec.source.kafka.security = Some(KafkaSecurity {
            protocol: SecurityProtocol::SaslSsl,
            sasl: Some(SaslSpec {
                mechanism: SaslMechanism::ScramSha512,
                username_secret_ref: secret("kafka", "user"),
                password_secret_ref: secret("kafka", "password"),
            }),
            tls: Some(TlsSpec {
                ca_secret_ref: Some(secret("kafka-ca", "ca.crt")),
                ..Default::default()
            }),
        });
        if let Some(r) = v
            .spec
            .format
            .avro
            .as_mut()
            .unwrap()
            .schema_registry
            .as_mut()
        {
            r.basic_auth = Some(BasicAuth {
                username_secret_ref: secret("registry", "user"),
                // the same key twice yields one variable
                password_secret_ref: secret("kafka", "password"),
            });
        }
        v.spec.storage = Some(StorageSpec {
            credentials_secret_ref: Some(StorageCredentials {
                access_key_id: secret("s3", "id"),
                secret_access_key: secret("s3", "secret"),
                session_token: None,
            }),
            ..Default::default()
        });
        let env = secret_env(&v.spec);
        let names: Vec<&str> = env.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "SPILLWAY_SECRET_KAFKA_CA_CA_CRT",
                "SPILLWAY_SECRET_KAFKA_PASSWORD",
                "SPILLWAY_SECRET_KAFKA_USER",
                "SPILLWAY_SECRET_REGISTRY_USER",
                "SPILLWAY_SECRET_S3_ID",
                "SPILLWAY_SECRET_S3_SECRET",
            ]
        );
        for e in &env {
            assert!(e.value.is_none(), "{} carries a value", e.name);
            let r = e
                .value_from
                .as_ref()
                .unwrap()
                .secret_key_ref
                .as_ref()
                .unwrap();
            assert_eq!(
                SecretKeyRef {
                    name: r.name.clone(),
                    key: r.key.clone()
                }
                .env_var(),
                e.name
            );
        }
        let d = build_deployment(&v, "h");
        // POD_IP first, then the six secret references.
        assert_eq!(pod(&d).containers[0].env.as_ref().unwrap().len(), 7);
    }

    #[test]
    fn a_configmap_descriptor_set_is_projected_into_the_config_dir() {
        let mut v = valid();
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
        let d = build_deployment(&v, "h");
        let vol = pod(&d)
            .volumes
            .iter()
            .flatten()
            .find(|v| v.name == CONFIG_VOLUME)
            .unwrap();
        let sources = vol.projected.as_ref().unwrap().sources.as_ref().unwrap();
        let protos = sources
            .iter()
            .filter_map(|s| s.config_map.as_ref())
            .find(|c| c.name == "protos")
            .unwrap();
        let item = &protos.items.as_ref().unwrap()[0];
        assert_eq!(
            (item.key.as_str(), item.path.as_str()),
            ("shop.pb", "schemas/descriptors.pb")
        );
    }

    #[test]
    fn configmap_schemas_are_projected_into_the_config_dir() {
        let mut v = valid();
        v.spec.format.avro.as_mut().unwrap().encoding = AvroEncoding::Raw;
        v.spec.format.avro.as_mut().unwrap().schema_registry = None;
        v.spec.format.avro.as_mut().unwrap().writer_schema = Some(SchemaSource {
            config_map_key_ref: Some(ConfigMapKeyRef {
                name: "schemas".into(),
                key: "hsutest.avsc".into(),
            }),
            ..Default::default()
        });
        let d = build_deployment(&v, "h");
        let vol = pod(&d)
            .volumes
            .iter()
            .flatten()
            .find(|v| v.name == CONFIG_VOLUME)
            .unwrap();
        let sources = vol.projected.as_ref().unwrap().sources.as_ref().unwrap();
        let items: Vec<(String, String, String)> = sources
            .iter()
            .filter_map(|s| s.config_map.as_ref())
            .flat_map(|c| {
                c.items
                    .iter()
                    .flatten()
                    .map(|i| (c.name.clone(), i.key.clone(), i.path.clone()))
            })
            .collect();
        assert_eq!(
            items,
            [
                (
                    "events-pipeline".into(),
                    "pipeline.yaml".into(),
                    "pipeline.yaml".into()
                ),
                (
                    "schemas".into(),
                    "hsutest.avsc".into(),
                    "schemas/writer.avsc".into()
                ),
            ]
        );
    }
}
