//! Pure: builds a valid pipeline's child objects (ConfigMap, the workers as a Deployment —
//! or a Job for a bounded (`availableNow` or `endingOffsets`) pipeline —, Service,
//! PodDisruptionBudget, the workers' NetworkPolicy, maintenance CronJobs) as k8s-openapi
//! values — no I/O.
//!
//! Every child is named after the pipeline (the ConfigMap `<name>-pipeline`), carries the
//! worker labels and a controller owner reference to the pipeline, and is applied with one
//! field manager, [`FIELD_MANAGER`].

mod configmap;
mod cronjob;
mod deployment;
mod job;
mod networkpolicy;
mod pdb;
mod service;

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

pub use configmap::{
    DESCRIPTOR_SET_FILE, PIPELINE_FILE, READER_SCHEMA_FILE, WRITER_SCHEMA_FILE, build_configmap,
    config_hash, render_config,
};
pub use cronjob::{MAINTENANCE_APP, OPTIMIZE, VACUUM, build_cronjobs, cronjob_name};
pub use deployment::{
    CONFIG_DIR, CONFIG_HASH_ANNOTATION, CONTAINER_NAME, HTTP_PORT_NAME, POD_IP_ENV,
    TERMINATION_MESSAGE_PATH, TMP_DIR, build_deployment, build_pod_template, secret_env,
};
pub use job::build_job;
pub use networkpolicy::build_network_policy;
pub use pdb::build_pdb;
pub use service::build_service;

use crate::config::Settings;
use crate::validate::ValidPipeline;

/// The one server-side-apply field manager of everything the operator writes.
pub const FIELD_MANAGER: &str = "spillway-operator";
/// `app.kubernetes.io/name` of every child.
pub const NAME_LABEL: &str = "app.kubernetes.io/name";
/// `app.kubernetes.io/instance`: the pipeline's name.
pub const INSTANCE_LABEL: &str = "app.kubernetes.io/instance";
/// `app.kubernetes.io/managed-by`.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// The value of [`NAME_LABEL`].
pub const WORKER_APP: &str = "spillway-worker";
/// The value of [`MANAGED_BY_LABEL`].
pub const MANAGER: &str = "spillway-operator";

/// Why children could not be built.
#[derive(Debug, thiserror::Error, strum::IntoStaticStr)]
pub enum Error {
    /// The worker's pipeline file could not be rendered.
    #[error("failed to render the pipeline file of {namespace}/{name}: {source}")]
    RenderFailed {
        /// Pipeline namespace.
        namespace: String,
        /// Pipeline name.
        name: String,
        /// The YAML error.
        #[source]
        source: serde_yaml::Error,
    },
}

impl Error {
    /// The static name of the variant (metric label, Event reason).
    pub fn reason(&self) -> &'static str {
        self.into()
    }
}

/// Every child of one pipeline, in apply order.
#[derive(Clone, Debug, PartialEq)]
pub struct Children {
    /// The pipeline file the workers run.
    pub configmap: ConfigMap,
    /// The workers.
    pub workload: Workload,
    /// The workers' HTTP port (metrics, progress).
    pub service: Service,
    /// Voluntary-disruption budget; `None` when suspended (removed as an orphan).
    pub pdb: Option<PodDisruptionBudget>,
    /// Who may reach the workers' HTTP port; `None` when the operator applies none.
    pub network_policy: Option<NetworkPolicy>,
    /// `spillway maintain` CronJobs of `spec.maintenance` (Delta only).
    pub cronjobs: Vec<CronJob>,
    /// Hash of the pipeline file, also on the pod template.
    pub config_hash: String,
}

/// How the workers run.
#[derive(Clone, Debug, PartialEq)]
pub enum Workload {
    /// A streaming pipeline: a Deployment, restarted when a worker exits.
    Deployment(Box<Deployment>),
    /// A bounded (`availableNow` or `endingOffsets`) pipeline: a Job that runs to completion.
    Job(Box<Job>),
}

impl Workload {
    /// The Deployment, for a streaming pipeline.
    pub fn deployment(&self) -> Option<&Deployment> {
        match self {
            Self::Deployment(d) => Some(d),
            Self::Job(_) => None,
        }
    }

    /// The Job, for a bounded pipeline.
    pub fn job(&self) -> Option<&Job> {
        match self {
            Self::Job(j) => Some(j),
            Self::Deployment(_) => None,
        }
    }
}

/// Builds every child of a valid pipeline (the NetworkPolicy as `settings` say).
pub fn build_children(v: &ValidPipeline, settings: &Settings) -> Result<Children, Error> {
    let yaml = render_config(v).map_err(|source| Error::RenderFailed {
        namespace: v.namespace.clone(),
        name: v.name.clone(),
        source,
    })?;
    let hash = config_hash(&yaml);
    Ok(Children {
        configmap: build_configmap(v, yaml),
        workload: if v.spec.is_bounded() {
            Workload::Job(Box::new(build_job(v, &hash)))
        } else {
            Workload::Deployment(Box::new(build_deployment(v, &hash)))
        },
        service: build_service(v),
        pdb: build_pdb(v).filter(|_| !v.spec.is_bounded()),
        network_policy: settings
            .worker_network_policy
            .as_ref()
            .map(|p| build_network_policy(v, p)),
        cronjobs: build_cronjobs(v, &hash),
        config_hash: hash,
    })
}

/// Labels selecting a pipeline's worker pods (and labelling every child).
pub fn selector_labels(name: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (NAME_LABEL.to_string(), WORKER_APP.to_string()),
        (INSTANCE_LABEL.to_string(), name.to_string()),
        (MANAGED_BY_LABEL.to_string(), MANAGER.to_string()),
    ])
}

/// The selector as a string, for `status.selector` and list calls.
pub fn selector_string(name: &str) -> String {
    selector_labels(name)
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Selects every child of a pipeline, whatever its kind.
pub fn children_selector(name: &str) -> String {
    format!("{INSTANCE_LABEL}={name},{MANAGED_BY_LABEL}={MANAGER}")
}

/// Name of the pipeline's ConfigMap.
pub fn configmap_name(pipeline: &str) -> String {
    format!("{pipeline}-pipeline")
}

/// Metadata of a child: name, namespace, worker labels and the controller owner reference.
fn child_meta(v: &ValidPipeline, name: String) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: Some(v.namespace.clone()),
        labels: Some(selector_labels(&v.name)),
        owner_references: Some(vec![v.owner.clone()]),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate::{tests::pipeline, validate};

    #[test]
    fn every_child_is_labelled_and_owned() {
        let v = validate(&pipeline()).unwrap();
        let settings = Settings {
            worker_network_policy: Some(crate::config::WorkerNetworkPolicy {
                operator_namespace: None,
                scrape_namespaces: vec![],
            }),
            ..Settings::default()
        };
        let c = build_children(&v, &settings).unwrap();
        let metas = [
            &c.configmap.metadata,
            &c.workload.deployment().unwrap().metadata,
            &c.service.metadata,
            &c.pdb.as_ref().unwrap().metadata,
            &c.network_policy.as_ref().unwrap().metadata,
        ];
        for m in metas {
            assert_eq!(m.namespace.as_deref(), Some("analytics"));
            assert_eq!(m.labels.as_ref(), Some(&selector_labels("events")));
            let owners = m.owner_references.as_ref().unwrap();
            assert_eq!(owners.len(), 1);
            assert_eq!(owners[0].uid, "0000-1111");
            assert_eq!(owners[0].controller, Some(true));
        }
        assert_eq!(
            c.configmap.metadata.name.as_deref(),
            Some("events-pipeline")
        );
        assert_eq!(
            c.workload.deployment().unwrap().metadata.name.as_deref(),
            Some("events")
        );
    }

    #[test]
    fn selector_string_is_sorted_and_complete() {
        assert_eq!(
            selector_string("p"),
            "app.kubernetes.io/instance=p,app.kubernetes.io/managed-by=spillway-operator,app.kubernetes.io/name=spillway-worker"
        );
    }
}
