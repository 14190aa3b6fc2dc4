//! Pure: `spec.worker` pod settings and `spec.maintenance` schedules.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Affinity, EnvVar, ResourceRequirements, Toleration};
use kube::KubeSchema;
use serde::{Deserialize, Serialize};

use crate::{defaults, rules};

/// Worker pod settings.
#[derive(Serialize, Deserialize, schemars::JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WorkerSpec {
    /// Container image. Default: the image matching the operator's version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Image pull policy: Always, IfNotPresent or Never.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_policy: Option<String>,
    /// CPU and memory requests and limits of the worker container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Extra environment variables (use `valueFrom.secretKeyRef` for anything secret).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVar>,
    /// Node labels the pods must match.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    /// Tolerations of the pods.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
    /// Affinity rules of the pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,
    /// Service account of the pods (e.g. one bound to an IAM role for S3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_name: Option<String>,
    /// Extra annotations on the pods.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// Extra labels on the pods.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

impl WorkerSpec {
    /// The image in force.
    pub fn effective_image(&self) -> &str {
        self.image.as_deref().unwrap_or(defaults::WORKER_IMAGE)
    }
}

/// Delta table maintenance, run by the operator as CronJobs.
#[derive(Serialize, Deserialize, schemars::JsonSchema, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MaintenanceSpec {
    /// Compaction of small files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub optimize: Option<OptimizeSpec>,
    /// Removal of files no longer referenced by the table.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vacuum: Option<VacuumSpec>,
}

/// Compaction schedule.
#[derive(Serialize, Deserialize, schemars::JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OptimizeSpec {
    /// Cron schedule (5 fields, UTC), e.g. `0 * * * *`.
    #[schemars(length(min = 9), regex(pattern = r"^\s*\S+(\s+\S+){4}\s*$"))]
    pub schedule: String,
    /// Target size of compacted files, in bytes.
    #[serde(default = "defaults::target_file_size")]
    #[schemars(range(min = 1048576))]
    pub target_file_size: i64,
}

/// Vacuum schedule.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[x_kube(validation = rules::VACUUM_RETENTION_MINIMUM)]
pub struct VacuumSpec {
    /// Cron schedule (5 fields, UTC), e.g. `30 3 * * *`.
    #[schemars(length(min = 9), regex(pattern = r"^\s*\S+(\s+\S+){4}\s*$"))]
    pub schedule: String,
    /// Files unreferenced for longer than this are deleted (Go duration). Default `168h`.
    #[serde(default = "defaults::vacuum_retention")]
    #[schemars(regex(pattern = r"^([0-9]+(\.[0-9]+)?(ns|us|ms|s|m|h))+$"))]
    pub retention: String,
    /// Allow a retention below 168h (readers of older versions may fail).
    #[serde(default)]
    pub allow_short_retention: bool,
}
