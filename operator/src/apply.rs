//! I/O: server-side applies a pipeline's children with one field manager (ConfigMap first,
//! then the Deployment or Job, Service, PodDisruptionBudget) and deletes children it no
//! longer wants. An object under a child's name that the pipeline does not own is left
//! alone: [`Error::NotOwned`], never a forced takeover.

use std::fmt::Debug;

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::{Api, Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tracing::info;

use crate::build::{CONFIG_HASH_ANNOTATION, Children, FIELD_MANAGER, Workload, children_selector};

/// Why applying or cleaning up children failed.
#[derive(Debug, thiserror::Error, strum::IntoStaticStr)]
pub enum Error {
    /// The API server refused or failed a server-side apply.
    #[error("failed to apply {kind} {namespace}/{name}: {source}")]
    ApplyFailed {
        /// Kind of the child.
        kind: String,
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
        /// The client error.
        #[source]
        source: kube::Error,
    },
    /// Listing children (to find orphans) failed.
    #[error("failed to list {kind} in {namespace}: {source}")]
    ListFailed {
        /// Kind listed.
        kind: String,
        /// Namespace listed.
        namespace: String,
        /// The client error.
        #[source]
        source: kube::Error,
    },
    /// An object with a child's name exists and is not owned by the pipeline.
    #[error(
        "{kind} {namespace}/{name} exists and is not owned by this pipeline: it is left alone; delete or rename it, or rename the pipeline"
    )]
    NotOwned {
        /// Kind of the object.
        kind: String,
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
    },
    /// Reading an object before applying it failed.
    #[error("failed to read {kind} {namespace}/{name}: {source}")]
    GetFailed {
        /// Kind of the object.
        kind: String,
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
        /// The client error.
        #[source]
        source: kube::Error,
    },
    /// Deleting an orphaned child failed.
    #[error("failed to delete orphaned {kind} {namespace}/{name}: {source}")]
    DeleteFailed {
        /// Kind of the orphan.
        kind: String,
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
        /// The client error.
        #[source]
        source: kube::Error,
    },
}

impl Error {
    /// The static name of the variant (metric label, Event reason).
    pub fn reason(&self) -> &'static str {
        self.into()
    }

    /// Whether retrying cannot help until the pipeline changes: the API server judged the
    /// object itself invalid (400 Bad Request, 422 Invalid).
    pub fn is_permanent(&self) -> bool {
        let source = match self {
            Self::NotOwned { .. } => return true,
            Self::ApplyFailed { source, .. }
            | Self::GetFailed { source, .. }
            | Self::ListFailed { source, .. }
            | Self::DeleteFailed { source, .. } => source,
        };
        matches!(source, kube::Error::Api(s) if s.code == 400 || s.code == 422)
    }
}

/// Applies every child in order (each only if the pipeline `owner_uid` owns it or it does
/// not exist) and returns the workers' Deployment or Job as the API server stored it (its
/// `status` included).
pub async fn apply_children(
    client: &Client,
    c: &Children,
    owner_uid: &str,
) -> Result<Workload, Error> {
    apply_owned(client, &c.configmap, owner_uid).await?;
    let workload = match &c.workload {
        Workload::Deployment(d) => {
            Workload::Deployment(Box::new(apply_owned(client, d.as_ref(), owner_uid).await?))
        }
        Workload::Job(j) => Workload::Job(Box::new(
            apply_job(client, j, &c.config_hash, owner_uid).await?,
        )),
    };
    apply_owned(client, &c.service, owner_uid).await?;
    if let Some(pdb) = &c.pdb {
        apply_owned(client, pdb, owner_uid).await?;
    }
    if let Some(np) = &c.network_policy {
        apply_owned(client, np, owner_uid).await?;
    }
    Ok(workload)
}

/// A Job's pod template cannot change: a Job of an older pipeline file is deleted (its pods
/// with it) and created anew; otherwise it is applied (parallelism, suspend).
async fn apply_job(
    client: &Client,
    job: &Job,
    config_hash: &str,
    owner_uid: &str,
) -> Result<Job, Error> {
    if let Some(existing) = get_owned(client, job, owner_uid).await? {
        let hash = existing
            .spec
            .as_ref()
            .and_then(|s| s.template.metadata.as_ref())
            .and_then(|m| m.annotations.as_ref())
            .and_then(|a| a.get(CONFIG_HASH_ANNOTATION));
        if hash.map(String::as_str) != Some(config_hash) {
            let namespace = job.namespace().unwrap_or_default();
            let name = job.name_any();
            info!(%namespace, %name, "the pipeline file changed: replacing the Job");
            match Api::<Job>::namespaced(client.clone(), &namespace)
                .delete(&name, &DeleteParams::background())
                .await
            {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.is_not_found() => {}
                Err(source) => {
                    return Err(Error::DeleteFailed {
                        kind: "Job".into(),
                        namespace,
                        name,
                        source,
                    });
                }
            }
        }
    }
    ssa(client, job).await
}

/// The object under `obj`'s name, if any; [`Error::NotOwned`] when it is not the
/// pipeline's.
async fn get_owned<K>(client: &Client, obj: &K, owner_uid: &str) -> Result<Option<K>, Error>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + Debug
        + DeserializeOwned,
{
    let namespace = obj.namespace().unwrap_or_default();
    let name = obj.name_any();
    let kind = K::kind(&()).to_string();
    let existing = Api::<K>::namespaced(client.clone(), &namespace)
        .get_opt(&name)
        .await
        .map_err(|source| Error::GetFailed {
            kind: kind.clone(),
            namespace: namespace.clone(),
            name: name.clone(),
            source,
        })?;
    match existing {
        Some(e) if !e.owner_references().iter().any(|o| o.uid == owner_uid) => {
            Err(Error::NotOwned {
                kind,
                namespace,
                name,
            })
        }
        other => Ok(other),
    }
}

async fn apply_owned<K>(client: &Client, obj: &K, owner_uid: &str) -> Result<K, Error>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + Debug
        + Serialize
        + DeserializeOwned,
{
    get_owned(client, obj, owner_uid).await?;
    ssa(client, obj).await
}

/// Applies the maintenance CronJobs (those the pipeline owns or that do not exist) and
/// returns them as the API server stored them (their `status` says when each last ran).
pub async fn apply_cronjobs(
    client: &Client,
    c: &Children,
    owner_uid: &str,
) -> Result<Vec<CronJob>, Error> {
    let mut out = Vec::with_capacity(c.cronjobs.len());
    for job in &c.cronjobs {
        out.push(apply_owned(client, job, owner_uid).await?);
    }
    Ok(out)
}

/// Deletes the children of pipeline `name` (labelled as such and owned by `owner_uid`) that
/// `c` no longer contains, e.g. the PodDisruptionBudget after a suspend. Returns
/// `Kind/name` of each deleted child.
pub async fn delete_orphans(
    client: &Client,
    namespace: &str,
    name: &str,
    owner_uid: &str,
    c: &Children,
) -> Result<Vec<String>, Error> {
    let sweep = Sweep {
        client,
        namespace,
        selector: children_selector(name),
        owner_uid,
    };
    let mut deleted = vec![];
    deleted.extend(sweep.run::<ConfigMap>(&[&c.configmap]).await?);
    let deployments: Vec<&Deployment> = c.workload.deployment().into_iter().collect();
    deleted.extend(sweep.run::<Deployment>(&deployments).await?);
    let jobs: Vec<&Job> = c.workload.job().into_iter().collect();
    deleted.extend(sweep.run::<Job>(&jobs).await?);
    deleted.extend(sweep.run::<Service>(&[&c.service]).await?);
    let pdbs: Vec<&PodDisruptionBudget> = c.pdb.iter().collect();
    deleted.extend(sweep.run::<PodDisruptionBudget>(&pdbs).await?);
    let policies: Vec<&NetworkPolicy> = c.network_policy.iter().collect();
    deleted.extend(sweep.run::<NetworkPolicy>(&policies).await?);
    let cronjobs: Vec<&CronJob> = c.cronjobs.iter().collect();
    deleted.extend(sweep.run::<CronJob>(&cronjobs).await?);
    Ok(deleted)
}

async fn ssa<K>(client: &Client, obj: &K) -> Result<K, Error>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + Debug
        + Serialize
        + DeserializeOwned,
{
    let namespace = obj.namespace().unwrap_or_default();
    let name = obj.name_any();
    Api::<K>::namespaced(client.clone(), &namespace)
        .patch(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(obj),
        )
        .await
        .map_err(|source| Error::ApplyFailed {
            kind: K::kind(&()).to_string(),
            namespace: namespace.clone(),
            name: name.clone(),
            source,
        })
}

struct Sweep<'a> {
    client: &'a Client,
    namespace: &'a str,
    selector: String,
    owner_uid: &'a str,
}

impl Sweep<'_> {
    async fn run<K>(&self, keep: &[&K]) -> Result<Vec<String>, Error>
    where
        K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
            + Clone
            + Debug
            + DeserializeOwned,
    {
        let kind = K::kind(&()).to_string();
        let api = Api::<K>::namespaced(self.client.clone(), self.namespace);
        let list = api
            .list(&ListParams::default().labels(&self.selector))
            .await
            .map_err(|source| Error::ListFailed {
                kind: kind.clone(),
                namespace: self.namespace.to_string(),
                source,
            })?;
        let mut deleted = vec![];
        for obj in list.items {
            let name = obj.name_any();
            let owned = obj
                .owner_references()
                .iter()
                .any(|o| o.uid == self.owner_uid);
            if !owned || keep.iter().any(|k| k.name_any() == name) {
                continue;
            }
            match api.delete(&name, &DeleteParams::background()).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.is_not_found() => {}
                Err(source) => {
                    return Err(Error::DeleteFailed {
                        kind,
                        namespace: self.namespace.to_string(),
                        name,
                        source,
                    });
                }
            }
            info!(kind = %kind, namespace = self.namespace, name = %name, "deleted orphaned child");
            deleted.push(format!("{kind}/{name}"));
        }
        Ok(deleted)
    }
}
