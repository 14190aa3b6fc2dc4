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
    // Only the workload's own pods: a pod that merely carries the labels is not read.
    let job_uid = job.as_ref().and_then(|j| j.metadata.uid.as_deref());
    let owned: Vec<&Pod> = pods
        .items
        .iter()
        .filter(|p| owned_by_workload(p, name, job_uid))
        .collect();
    let terminated = owned.iter().copied().filter_map(termination).collect();
    let targets: Vec<(String, String)> = owned
        .into_iter()
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

/// Whether pipeline `name`'s workload controls `p`: its controller is the Job (by uid) or
/// one of the Deployment's ReplicaSets (which the Deployment controller names
/// `<deployment>-<pod-template-hash>`).
pub fn owned_by_workload(p: &Pod, name: &str, job_uid: Option<&str>) -> bool {
    let Some(owner) = p
        .metadata
        .owner_references
        .as_ref()
        .and_then(|refs| refs.iter().find(|r| r.controller == Some(true)))
    else {
        return false;
    };
    match owner.kind.as_str() {
        "Job" => job_uid == Some(owner.uid.as_str()),
        "ReplicaSet" => p
            .labels()
            .get("pod-template-hash")
            .is_some_and(|hash| owner.name == format!("{name}-{hash}")),
        _ => false,
    }
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

/// The largest `/progress` answer read (a report is a few kilobytes).
pub const MAX_PROGRESS_BYTES: usize = 1 << 20;

/// One worker's `/progress`: within `timeout` in all (connect, headers and body), at most
/// [`MAX_PROGRESS_BYTES`], a 2xx answer only (the client follows no redirects).
async fn fetch(
    http: &reqwest::Client,
    url: &str,
    timeout: Duration,
) -> Result<WorkerProgress, String> {
    let mut response = http
        .get(url)
        .timeout(timeout)
        .send()
        .await
        .map_err(|e| format!("GET {url}: {e}"))?;
    if !response.status().is_success() {
        return Err(format!("GET {url}: http {}", response.status().as_u16()));
    }
    if response
        .content_length()
        .is_some_and(|n| n > MAX_PROGRESS_BYTES as u64)
    {
        return Err(format!(
            "GET {url}: answer exceeds {MAX_PROGRESS_BYTES} bytes"
        ));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| format!("GET {url}: {e}"))?
    {
        if body.len() + chunk.len() > MAX_PROGRESS_BYTES {
            return Err(format!(
                "GET {url}: answer exceeds {MAX_PROGRESS_BYTES} bytes"
            ));
        }
        body.extend_from_slice(&chunk);
    }
    serde_json::from_slice::<WorkerProgress>(&body)
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

    fn owned(kind: &str, name: &str, uid: &str, hash: Option<&str>) -> Pod {
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
        let mut p = pod(Some("10.0.0.7"), None, true);
        p.metadata.owner_references = Some(vec![OwnerReference {
            api_version: "v1".into(),
            kind: kind.into(),
            name: name.into(),
            uid: uid.into(),
            controller: Some(true),
            ..Default::default()
        }]);
        p.metadata.labels = hash.map(|h| [("pod-template-hash".to_string(), h.to_string())].into());
        p
    }

    #[test]
    fn only_the_workloads_own_pods_are_read() {
        assert!(owned_by_workload(
            &owned("ReplicaSet", "events-5d8f", "u", Some("5d8f")),
            "events",
            None
        ));
        assert!(owned_by_workload(
            &owned("Job", "events", "job-1", None),
            "events",
            Some("job-1")
        ));
        // Labels alone, another Deployment's ReplicaSet, another Job, or no owner: not ours.
        assert!(!owned_by_workload(
            &pod(Some("10.0.0.7"), None, true),
            "events",
            Some("job-1")
        ));
        assert!(!owned_by_workload(
            &owned("ReplicaSet", "other-5d8f", "u", Some("5d8f")),
            "events",
            None
        ));
        assert!(!owned_by_workload(
            &owned("ReplicaSet", "events-5d8f", "u", None),
            "events",
            None
        ));
        assert!(!owned_by_workload(
            &owned("Job", "events", "job-2", None),
            "events",
            Some("job-1")
        ));
        assert!(!owned_by_workload(
            &owned("StatefulSet", "events", "u", None),
            "events",
            None
        ));
    }

    async fn serve(app: axum::Router) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{addr}/progress")
    }

    fn client() -> reqwest::Client {
        reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap()
    }

    #[tokio::test]
    async fn progress_reads_follow_no_redirect_and_are_bounded() {
        use axum::routing::get;
        let elsewhere = serve(axum::Router::new().route(
            "/progress",
            get(|| async { axum::Json(WorkerProgress::default()) }),
        ))
        .await;
        let to = elsewhere.clone();
        let redirecting = serve(axum::Router::new().route(
            "/progress",
            get(move || {
                let to = to.clone();
                async move { axum::response::Redirect::temporary(&to) }
            }),
        ))
        .await;
        let huge = serve(axum::Router::new().route(
            "/progress",
            get(|| async { "x".repeat(MAX_PROGRESS_BYTES + 1) }),
        ))
        .await;
        let t = Duration::from_secs(5);
        assert!(fetch(&client(), &elsewhere, t).await.is_ok());
        let e = fetch(&client(), &redirecting, t).await.unwrap_err();
        assert!(e.ends_with("http 307"), "{e}");
        let e = fetch(&client(), &huge, t).await.unwrap_err();
        assert!(e.contains("exceeds"), "{e}");
    }
}
