//! I/O: reads what a pipeline's status depends on — its worker Deployment or Job, the worker
//! pods (their termination messages) and each ready one's `/progress` — and never a Secret.

use std::time::Duration;

use futures::future::join_all;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::ListParams;
use kube::{Api, Client, ResourceExt};
use spillway_api::defaults::WORKER_HTTP_PORT;
use tracing::debug;

use crate::build::{CONTAINER_NAME, HTTP_PORT_NAME, selector_string};
use spillway_api::report::{PROGRESS_PATH, WorkerCondition, WorkerProgress};

/// Why the cluster could not be read.
#[derive(Debug, thiserror::Error, strum::IntoStaticStr)]
pub enum Error {
    /// Reading the worker Deployment failed.
    #[error("failed to read deployment {namespace}/{name}: {source}")]
    GetDeploymentFailed {
        /// Namespace.
        namespace: String,
        /// Deployment (= pipeline) name.
        name: String,
        /// The client error.
        #[source]
        source: kube::Error,
    },
    /// Reading the worker Job failed.
    #[error("failed to read job {namespace}/{name}: {source}")]
    GetJobFailed {
        /// Namespace.
        namespace: String,
        /// Job (= pipeline) name.
        name: String,
        /// The client error.
        #[source]
        source: kube::Error,
    },
    /// Listing the worker pods failed.
    #[error("failed to list the worker pods of {namespace}/{name}: {source}")]
    ListPodsFailed {
        /// Namespace.
        namespace: String,
        /// Pipeline name.
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
}

/// What was read.
#[derive(Clone, Debug, Default)]
pub struct Observed {
    /// The worker Deployment, when it exists.
    pub deployment: Option<Deployment>,
    /// The worker Job (an `availableNow` pipeline), when it exists.
    pub job: Option<Job>,
    /// Every ready worker pod and what its `/progress` answered.
    pub workers: Vec<Worker>,
    /// The final states worker containers left in their termination messages (the last
    /// run of each pod; a restarted container keeps its previous one until it is ready).
    pub terminated: Vec<Terminated>,
}

/// A worker container's final state, from its termination message.
#[derive(Clone, Debug, PartialEq)]
pub struct Terminated {
    /// Pod name.
    pub pod: String,
    /// The exit code.
    pub exit_code: i32,
    /// What the worker wrote (`Completed`, `Failed`, `DataLoss` …).
    pub condition: WorkerCondition,
}

/// A ready worker pod and its `/progress` answer.
#[derive(Clone, Debug, PartialEq)]
pub struct Worker {
    /// Pod name.
    pub pod: String,
    /// The report, or why it could not be had (connection refused, timeout, bad JSON).
    pub report: Result<WorkerProgress, String>,
}

/// Reads pipeline `name`'s Deployment and Job and, when either has pods, the pods: their
/// termination messages, and the ready ones' `/progress` (concurrently, each bounded by
/// `timeout`).
pub async fn observe(
    client: &Client,
    http: &reqwest::Client,
    timeout: Duration,
    namespace: &str,
    name: &str,
) -> Result<Observed, Error> {
    let deployment = Api::<Deployment>::namespaced(client.clone(), namespace)
        .get_opt(name)
        .await
        .map_err(|source| Error::GetDeploymentFailed {
            namespace: namespace.into(),
            name: name.into(),
            source,
        })?;
    let job = Api::<Job>::namespaced(client.clone(), namespace)
        .get_opt(name)
        .await
        .map_err(|source| Error::GetJobFailed {
            namespace: namespace.into(),
            name: name.into(),
            source,
        })?;
    let deployment_pods = deployment
        .as_ref()
        .and_then(|d| d.status.as_ref())
        .and_then(|s| s.replicas)
        .unwrap_or(0);
    if deployment_pods == 0 && job.is_none() {
        return Ok(Observed {
            deployment,
            job,
            ..Default::default()
        });
    }
    let pods = Api::<Pod>::namespaced(client.clone(), namespace)
        .list(&ListParams::default().labels(&selector_string(name)))
        .await
        .map_err(|source| Error::ListPodsFailed {
            namespace: namespace.into(),
            name: name.into(),
            source,
        })?;
    let terminated = pods.items.iter().filter_map(termination).collect();
    let targets: Vec<(String, String)> = pods
        .items
        .iter()
        .filter(|p| is_ready(p))
        .filter_map(|p| progress_url(p).map(|u| (p.name_any(), u)))
        .collect();
    let workers = join_all(targets.into_iter().map(|(pod, url)| async move {
        let report = fetch(http, &url, timeout).await;
        if let Err(e) = &report {
            debug!(pod = %pod, url = %url, error = %e, "worker progress unavailable");
        }
        Worker { pod, report }
    }))
    .await;
    Ok(Observed {
        deployment,
        job,
        workers,
        terminated,
    })
}

/// The worker container's last termination with a message the worker wrote: its current
/// state when it has ended, else — while it waits to be restarted, or runs again but is not
/// ready yet — its previous run's.
pub fn termination(p: &Pod) -> Option<Terminated> {
    let status = p
        .status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .iter()
        .find(|c| c.name == CONTAINER_NAME)?;
    let state = status.state.as_ref();
    let ended = match state.and_then(|s| s.terminated.as_ref()) {
        Some(t) => t,
        // A container that runs again and is ready has left its previous end behind; one
        // that is waiting to restart, or started again but is not ready yet, has not (else a
        // crash-looping worker's reason would vanish each time it starts).
        None if status.ready => return None,
        None => status.last_state.as_ref()?.terminated.as_ref()?,
    };
    let condition = WorkerCondition::from_termination_message(ended.message.as_deref()?)?;
    Some(Terminated {
        pod: p.name_any(),
        exit_code: ended.exit_code,
        condition,
    })
}

/// Whether a pod is ready, running and not being deleted.
pub fn is_ready(p: &Pod) -> bool {
    p.metadata.deletion_timestamp.is_none()
        && p.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// `http://<podIP>:<port>/progress`, the port being the worker container's named port
/// `http` (default [`WORKER_HTTP_PORT`]).
pub fn progress_url(p: &Pod) -> Option<String> {
    let ip = p.status.as_ref()?.pod_ip.as_deref()?;
    let port = p
        .spec
        .as_ref()
        .and_then(|s| s.containers.iter().find(|c| c.name == CONTAINER_NAME))
        .and_then(|c| c.ports.as_ref())
        .and_then(|ports| {
            ports
                .iter()
                .find(|port| port.name.as_deref() == Some(HTTP_PORT_NAME))
        })
        .map_or(WORKER_HTTP_PORT, |port| port.container_port);
    let host = if ip.contains(':') {
        format!("[{ip}]")
    } else {
        ip.to_string()
    };
    Some(format!("http://{host}:{port}{PROGRESS_PATH}"))
}

async fn fetch(
    http: &reqwest::Client,
    url: &str,
    timeout: Duration,
) -> Result<WorkerProgress, String> {
    let response = http
        .get(url)
        .timeout(timeout)
        .send()
        .await
        .map_err(|e| format!("GET {url}: {e}"))?;
    let response = response
        .error_for_status()
        .map_err(|e| format!("GET {url}: {e}"))?;
    response
        .json::<WorkerProgress>()
        .await
        .map_err(|e| format!("GET {url}: invalid progress report: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Container, ContainerPort, PodCondition, PodSpec, PodStatus};

    fn pod(ip: Option<&str>, port: Option<i32>, ready: bool) -> Pod {
        Pod {
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: CONTAINER_NAME.into(),
                    ports: port.map(|p| {
                        vec![ContainerPort {
                            name: Some("http".into()),
                            container_port: p,
                            ..Default::default()
                        }]
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            status: Some(PodStatus {
                pod_ip: ip.map(Into::into),
                conditions: Some(vec![PodCondition {
                    type_: "Ready".into(),
                    status: if ready { "True" } else { "False" }.into(),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn progress_urls() {
        let cases = [
            (
                pod(Some("10.0.0.7"), Some(9000), true),
                Some("http://10.0.0.7:9000/progress"),
            ),
            (
                pod(Some("10.0.0.7"), None, true),
                Some("http://10.0.0.7:8080/progress"),
            ),
            (
                pod(Some("fd00::7"), Some(8080), true),
                Some("http://[fd00::7]:8080/progress"),
            ),
            (pod(None, Some(8080), true), None),
        ];
        for (p, want) in cases {
            assert_eq!(progress_url(&p).as_deref(), want);
        }
    }

    #[test]
    fn a_restarted_worker_keeps_its_last_end_until_it_is_ready() {
        use k8s_openapi::api::core::v1::{
            ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStatus,
        };
        let lost = WorkerCondition::new(
            spillway_api::report::WorkerConditionType::DataLoss,
            "DataLoss",
            "t/0 lost 0..5",
        );
        let with = |ready: bool| {
            let mut p = pod(Some("10.0.0.1"), None, ready);
            p.status.as_mut().unwrap().container_statuses = Some(vec![ContainerStatus {
                name: CONTAINER_NAME.into(),
                ready,
                restart_count: 1,
                state: Some(ContainerState {
                    running: Some(ContainerStateRunning::default()),
                    ..Default::default()
                }),
                last_state: Some(ContainerState {
                    terminated: Some(ContainerStateTerminated {
                        exit_code: 1,
                        message: Some(lost.to_termination_message()),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }]);
            p
        };
        let t = termination(&with(false)).unwrap();
        assert_eq!((t.exit_code, &t.condition), (1, &lost));
        assert_eq!(termination(&with(true)), None);
    }

    #[test]
    fn readiness() {
        assert!(is_ready(&pod(Some("10.0.0.1"), None, true)));
        assert!(!is_ready(&pod(Some("10.0.0.1"), None, false)));
        assert!(!is_ready(&Pod::default()));
    }
}
