//! A kubelet stand-in for the cluster e2e (test code): this machine has a real control
//! plane but no kubelet and no container runtime, so this runs the pods instead.
//!
//! It registers one Node and keeps its heartbeat fresh, binds every unscheduled pod to it
//! (there is no scheduler either), and runs each pod's container as a local process of the
//! binary its image stands for:
//! - args and env as the pod spec gives them (`value`, `secretKeyRef`, `configMapKeyRef`,
//!   `fieldRef`), `$(VAR)` expanded as the kubelet does, nothing else from the host's env;
//! - its volumes materialised on disk (ConfigMap, Secret, projected, emptyDir, the
//!   ServiceAccount token from the TokenRequest API) and bind-mounted at their `mountPath`
//!   in a private mount namespace (`unshare --mount`), with the termination-message file;
//! - its own loopback address (`127.A.B.N`, see [`PodNet`]) as `status.podIP`;
//! - its readiness and liveness probes run against that address, setting `Ready`;
//! - `restartPolicy` honoured when the process exits (restart with back-off, or phase
//!   `Succeeded`/`Failed`), the termination message kept in the container status;
//! - a pod being deleted gets SIGTERM, SIGKILL after its grace period, and is then removed.
//!
//! It only looks at pods in the namespaces it is given, so several stand-ins (one per test
//! process, each with its own Node and address block) share one control plane.
//!
//! What it does not do: users, read-only root filesystems, resource limits, network
//! isolation. Those are the container runtime's, and none runs here.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{
    ConfigMap, Container, EnvVar, Node, Pod, Probe, Secret, ServiceAccount, Volume,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};
use tokio_util::sync::CancellationToken;

/// Errors of the harness.
#[derive(Debug, thiserror::Error)]
pub enum KubeletError {
    /// An API call failed.
    #[error("kubelet stand-in: {what}: {source}")]
    Api {
        /// What was attempted.
        what: String,
        /// The client error.
        #[source]
        source: kube::Error,
    },
    /// Preparing a pod failed (a missing Secret key, an unknown image …).
    #[error("kubelet stand-in: pod {pod}: {message}")]
    Pod {
        /// namespace/name.
        pod: String,
        /// Why.
        message: String,
    },
    /// Local I/O failed.
    #[error("kubelet stand-in: {what}: {source}")]
    Io {
        /// What was attempted.
        what: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

fn api_err(what: impl Into<String>) -> impl FnOnce(kube::Error) -> KubeletError {
    let what = what.into();
    move |source| KubeletError::Api { what, source }
}

fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> KubeletError {
    let what = what.into();
    move |source| KubeletError::Io { what, source }
}

/// How the stand-in runs pods.
#[derive(Debug, Clone)]
pub struct KubeletOptions {
    /// The Node's name.
    pub node: String,
    /// Where pod directories (volumes, logs, termination messages) go.
    pub root: PathBuf,
    /// Local binaries by command name: a container's `command[0]`, else its image's
    /// entrypoint ([`Self::entrypoint`]), is looked up here.
    pub binaries: BTreeMap<String, PathBuf>,
    /// The entrypoint of images without a `command` (the Dockerfile's `ENTRYPOINT`).
    pub entrypoint: String,
    /// `KUBERNETES_SERVICE_HOST`/`_PORT` of pods with a ServiceAccount token.
    pub api_host: String,
    /// See [`Self::api_host`].
    pub api_port: u16,
    /// The cluster CA (`ca.crt` of ServiceAccount token volumes).
    pub ca_file: PathBuf,
    /// Seconds between restarts of a crashed container (doubling, at most 5 minutes).
    pub restart_backoff: Duration,
    /// The namespaces whose pods this stand-in binds and runs (pods elsewhere are another
    /// stand-in's).
    pub namespaces: Vec<String>,
    /// The block of loopback addresses its pods get.
    pub pod_net: PodNet,
}

/// A block of loopback pod addresses, `127.{second}.{third + n / 200}.{10 + n % 200}` for
/// the n-th pod: one block per stand-in, so pods of two test processes (or of a CI run and a
/// local one on the same machine) never share an address and port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PodNet {
    /// The second octet: `SPILLWAY_E2E_POD_NET` (default 0), one value per suite run side by
    /// side on the machine.
    pub second: u8,
    /// The first third octet of the block: one value per test process of a suite.
    pub third: u8,
}

impl PodNet {
    /// The block `third` of the suite's network (`SPILLWAY_E2E_POD_NET`, default 0).
    pub fn from_env(third: u8) -> Self {
        let second = std::env::var("SPILLWAY_E2E_POD_NET")
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        Self { second, third }
    }

    /// The address of the `n`-th pod.
    pub fn address(&self, n: u32) -> String {
        let third = u32::from(self.third) + n / 200;
        format!("127.{}.{}.{}", self.second, third.min(255), 10 + n % 200)
    }
}

/// One pod's process and what the status says of it.
#[derive(Debug)]
struct Run {
    uid: String,
    ip: String,
    dir: PathBuf,
    child: Option<Child>,
    restart_policy: String,
    restarts: i32,
    started: String,
    /// Set when the process ended: exit code, termination message, when.
    ended: Option<(i32, String, String)>,
    /// The previous run's end (a restarted container's `lastState`).
    last: Option<(i32, String, String)>,
    restart_at: Option<Instant>,
    ready: bool,
    live_failures: i32,
    ready_failures: i32,
    next_probe: Instant,
    term_sent: Option<Instant>,
    patched: Option<Value>,
    pod: Pod,
}

/// The running stand-in; [`Kubelet::shutdown`] (or drop) ends every process it started.
#[derive(Debug)]
pub struct Kubelet {
    stop: CancellationToken,
    task: Option<tokio::task::JoinHandle<()>>,
    runs: Arc<Mutex<HashMap<String, Run>>>,
}

impl Kubelet {
    /// Registers the Node and starts running pods.
    pub async fn start(client: Client, opts: KubeletOptions) -> Result<Self, KubeletError> {
        install_crypto_provider();
        std::fs::create_dir_all(&opts.root).map_err(io_err("create the pod root"))?;
        register_node(&client, &opts.node).await?;
        let stop = CancellationToken::new();
        let runs = Arc::new(Mutex::new(HashMap::new()));
        let mut state = State {
            client,
            opts,
            runs: runs.clone(),
            next_ip: 0,
            warned: HashSet::new(),
        };
        let token = stop.clone();
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(500));
            let mut heartbeat = Instant::now();
            loop {
                tokio::select! {
                    _ = token.cancelled() => break,
                    _ = tick.tick() => {}
                }
                if heartbeat.elapsed() > Duration::from_secs(10) {
                    let _ = register_node(&state.client, &state.opts.node).await;
                    heartbeat = Instant::now();
                }
                if let Err(e) = state.sync().await {
                    eprintln!("{e}");
                }
            }
            state.kill_all().await;
            // The Node goes with its stand-in (its name is reused by the next run).
            let _ = Api::<Node>::all(state.client.clone())
                .delete(&state.opts.node, &DeleteParams::default())
                .await;
        });
        Ok(Self {
            stop,
            task: Some(task),
            runs,
        })
    }

    /// The pod IP the stand-in gave `namespace/name`, while it runs.
    pub fn pod_ip(&self, namespace: &str, name: &str) -> Option<String> {
        let runs = self.runs.lock().ok()?;
        runs.get(&format!("{namespace}/{name}"))
            .map(|r| r.ip.clone())
    }

    /// Kills a pod's process with SIGKILL (a crash: the pod stays, its restart policy
    /// decides what follows). Returns whether a process was running.
    pub fn crash(&self, namespace: &str, name: &str) -> bool {
        let Ok(mut runs) = self.runs.lock() else {
            return false;
        };
        match runs
            .get_mut(&format!("{namespace}/{name}"))
            .and_then(|r| r.child.as_mut())
        {
            Some(c) => c.start_kill().is_ok(),
            None => false,
        }
    }

    /// Stops the loop and kills every process it started.
    pub async fn shutdown(mut self) {
        self.stop.cancel();
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }
}

impl Drop for Kubelet {
    fn drop(&mut self) {
        self.stop.cancel();
        if let Ok(mut runs) = self.runs.lock() {
            for r in runs.values_mut() {
                if let Some(c) = r.child.as_mut() {
                    let _ = c.start_kill();
                }
            }
        }
    }
}

/// Picks rustls's `ring` provider for the process (the workspace enables two, so none is
/// the default): call before making a [`kube::Client`].
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

async fn register_node(client: &Client, node: &str) -> Result<(), KubeletError> {
    let nodes: Api<Node> = Api::all(client.clone());
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    let body = json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": node, "labels": {"kubernetes.io/hostname": node, "kubernetes.io/os": "linux"}},
    });
    nodes
        .patch(
            node,
            &PatchParams::apply("spillway-e2e-kubelet").force(),
            &Patch::Apply(&body),
        )
        .await
        .map_err(api_err("register the node"))?;
    let status = json!({"status": {
        "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                        "message": "spillway e2e kubelet stand-in", "lastHeartbeatTime": now,
                        "lastTransitionTime": now}],
        "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}, {"type": "Hostname", "address": node}],
        "capacity": {"cpu": "2", "memory": "24Gi", "pods": "110"},
        "allocatable": {"cpu": "2", "memory": "24Gi", "pods": "110"},
        "nodeInfo": {"machineID": "", "systemUUID": "", "bootID": "", "kernelVersion": "", "osImage": "",
                     "containerRuntimeVersion": "none://0", "kubeletVersion": "v1.33.0", "kubeProxyVersion": "",
                     "operatingSystem": "linux", "architecture": "amd64"},
    }});
    nodes
        .patch_status(node, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .map_err(api_err("update the node status"))?;
    Ok(())
}

struct State {
    client: Client,
    opts: KubeletOptions,
    runs: Arc<Mutex<HashMap<String, Run>>>,
    next_ip: u32,
    warned: HashSet<String>,
}

fn key(p: &Pod) -> String {
    format!("{}/{}", p.namespace().unwrap_or_default(), p.name_any())
}

fn now() -> String {
    k8s_openapi::jiff::Timestamp::now().to_string()
}

impl State {
    fn runs(&self) -> std::sync::MutexGuard<'_, HashMap<String, Run>> {
        match self.runs.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    async fn sync(&mut self) -> Result<(), KubeletError> {
        let pods: Api<Pod> = Api::all(self.client.clone());
        let list = pods
            .list(&ListParams::default())
            .await
            .map_err(api_err("list pods"))?;
        let mut seen = HashSet::new();
        for p in list.items {
            if !self
                .opts
                .namespaces
                .iter()
                .any(|n| Some(n.as_str()) == p.metadata.namespace.as_deref())
            {
                continue;
            }
            let k = key(&p);
            let node = p.spec.as_ref().and_then(|s| s.node_name.clone());
            match node {
                None if p.metadata.deletion_timestamp.is_none() => self.bind(&p).await?,
                Some(n) if n == self.opts.node => {
                    seen.insert(k.clone());
                    if let Err(e) = self.step(p).await
                        && self.warned.insert(format!("{k}: {e}"))
                    {
                        eprintln!("{e}");
                    }
                }
                _ => {}
            }
        }
        // Pods gone from the API (force-deleted): their processes go too.
        let gone: Vec<String> = self
            .runs()
            .keys()
            .filter(|k| !seen.contains(*k))
            .cloned()
            .collect();
        for k in gone {
            let run = self.runs().remove(&k);
            if let Some(mut r) = run
                && let Some(c) = r.child.as_mut()
            {
                let _ = c.kill().await;
            }
        }
        Ok(())
    }

    async fn bind(&self, p: &Pod) -> Result<(), KubeletError> {
        let namespace = p.namespace().unwrap_or_default();
        let name = p.name_any();
        let binding = json!({
            "apiVersion": "v1", "kind": "Binding",
            "metadata": {"name": name, "namespace": namespace},
            "target": {"apiVersion": "v1", "kind": "Node", "name": self.opts.node},
        });
        let url = format!("/api/v1/namespaces/{namespace}/pods/{name}/binding");
        let req = http::Request::post(url)
            .header("content-type", "application/json")
            .body(serde_json::to_vec(&binding).unwrap_or_default())
            .map_err(|e| KubeletError::Pod {
                pod: key(p),
                message: e.to_string(),
            })?;
        match self.client.request::<Value>(req).await {
            Ok(_) => Ok(()),
            // Already bound (a race with our own earlier call).
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
            Err(source) => Err(KubeletError::Api {
                what: format!("bind pod {}", key(p)),
                source,
            }),
        }
    }

    /// One pod, one step: start, watch, probe, restart, stop.
    async fn step(&mut self, p: Pod) -> Result<(), KubeletError> {
        let k = key(&p);
        let uid = p.uid().unwrap_or_default();
        let known = self.runs().get(&k).is_some_and(|r| r.uid == uid);
        if !known {
            let old = self.runs().remove(&k);
            if let Some(mut old) = old
                && let Some(c) = old.child.as_mut()
            {
                let _ = c.kill().await;
            }
            if p.metadata.deletion_timestamp.is_some() {
                return self.finalize(&p).await;
            }
            let phase = p.status.as_ref().and_then(|s| s.phase.clone());
            if matches!(phase.as_deref(), Some("Succeeded" | "Failed")) {
                return Ok(());
            }
            let run = self.prepare(&p).await?;
            self.runs().insert(k.clone(), run);
        }
        if p.metadata.deletion_timestamp.is_some() {
            return self.terminate(&p).await;
        }
        self.watch(&k).await;
        self.probe(&k).await;
        self.report(&k).await
    }

    /// Materialises the pod's volumes and env and starts its process.
    async fn prepare(&mut self, p: &Pod) -> Result<Run, KubeletError> {
        let k = key(p);
        let fail = |m: String| KubeletError::Pod {
            pod: k.clone(),
            message: m,
        };
        let spec = p.spec.clone().ok_or_else(|| fail("no spec".into()))?;
        let container = spec
            .containers
            .first()
            .cloned()
            .ok_or_else(|| fail("no container".into()))?;
        // Never reused while the stand-in runs (no TIME_WAIT sockets in the way).
        let ip = self.opts.pod_net.address(self.next_ip);
        self.next_ip += 1;
        let uid = p.uid().unwrap_or_default();
        let dir = self.opts.root.join(format!(
            "{}-{}-{}",
            p.namespace().unwrap_or_default(),
            p.name_any(),
            &uid[..uid.len().min(8)]
        ));
        std::fs::create_dir_all(&dir).map_err(io_err("create the pod directory"))?;
        let mut run = Run {
            uid,
            ip,
            dir,
            child: None,
            restart_policy: spec
                .restart_policy
                .clone()
                .unwrap_or_else(|| "Always".into()),
            restarts: 0,
            started: now(),
            ended: None,
            last: None,
            restart_at: None,
            ready: false,
            live_failures: 0,
            ready_failures: 0,
            next_probe: Instant::now() + Duration::from_secs(1),
            term_sent: None,
            patched: None,
            pod: p.clone(),
        };
        let mounts = self
            .volumes(
                p,
                &spec.volumes.clone().unwrap_or_default(),
                &container,
                &run,
            )
            .await?;
        let env = self.env(p, &container, &run.ip).await?;
        run.child = Some(self.spawn(&k, &container, &env, &mounts, &run)?);
        run.started = now();
        Ok(run)
    }

    async fn env(
        &self,
        p: &Pod,
        c: &Container,
        ip: &str,
    ) -> Result<Vec<(String, String)>, KubeletError> {
        let namespace = p.namespace().unwrap_or_default();
        let mut out: Vec<(String, String)> = vec![];
        for EnvVar {
            name,
            value,
            value_from,
        } in c.env.clone().unwrap_or_default()
        {
            let v = if let Some(v) = value {
                expand(&v, &out)
            } else if let Some(from) = value_from {
                if let Some(s) = from.secret_key_ref {
                    let secret = self.secret(&namespace, &s.name).await?;
                    secret_value(&secret, &s.key).ok_or_else(|| KubeletError::Pod {
                        pod: key(p),
                        message: format!("secret {} has no key {}", s.name, s.key),
                    })?
                } else if let Some(cm) = from.config_map_key_ref {
                    let map = self.configmap(&namespace, &cm.name).await?;
                    map.data
                        .and_then(|d| d.get(&cm.key).cloned())
                        .ok_or_else(|| KubeletError::Pod {
                            pod: key(p),
                            message: format!("configmap {} has no key {}", cm.name, cm.key),
                        })?
                } else if let Some(f) = from.field_ref {
                    match f.field_path.as_str() {
                        "status.podIP" => ip.to_string(),
                        "metadata.name" => p.name_any(),
                        "metadata.namespace" => namespace.clone(),
                        "spec.nodeName" => self.opts.node.clone(),
                        "status.hostIP" => "127.0.0.1".into(),
                        other => {
                            return Err(KubeletError::Pod {
                                pod: key(p),
                                message: format!("unsupported fieldRef {other}"),
                            });
                        }
                    }
                } else {
                    String::new()
                }
            } else {
                String::new()
            };
            out.retain(|(n, _)| n != &name);
            out.push((name, v));
        }
        Ok(out)
    }

    async fn secret(&self, namespace: &str, name: &str) -> Result<Secret, KubeletError> {
        Api::<Secret>::namespaced(self.client.clone(), namespace)
            .get(name)
            .await
            .map_err(api_err(format!("read secret {namespace}/{name}")))
    }

    async fn configmap(&self, namespace: &str, name: &str) -> Result<ConfigMap, KubeletError> {
        Api::<ConfigMap>::namespaced(self.client.clone(), namespace)
            .get(name)
            .await
            .map_err(api_err(format!("read configmap {namespace}/{name}")))
    }

    /// Writes each mounted volume under the pod directory; returns (host dir, mountPath).
    async fn volumes(
        &self,
        p: &Pod,
        volumes: &[Volume],
        c: &Container,
        run: &Run,
    ) -> Result<Vec<(PathBuf, String)>, KubeletError> {
        let namespace = p.namespace().unwrap_or_default();
        let mut out = vec![];
        for m in c.volume_mounts.clone().unwrap_or_default() {
            let Some(v) = volumes.iter().find(|v| v.name == m.name) else {
                continue;
            };
            let dir = run.dir.join("volumes").join(&v.name);
            std::fs::create_dir_all(&dir).map_err(io_err("create a volume"))?;
            let mut files: Vec<(String, Vec<u8>)> = vec![];
            if let Some(cm) = &v.config_map {
                let map = self.configmap(&namespace, &cm.name).await?;
                files.extend(configmap_files(&map, cm.items.as_deref()));
            }
            if let Some(s) = &v.secret {
                let name = s.secret_name.clone().unwrap_or_default();
                let secret = self.secret(&namespace, &name).await?;
                files.extend(secret_files(&secret, s.items.as_deref()));
            }
            if let Some(proj) = &v.projected {
                for src in proj.sources.clone().unwrap_or_default() {
                    if let Some(cm) = src.config_map {
                        let map = self.configmap(&namespace, &cm.name).await?;
                        files.extend(configmap_files(&map, cm.items.as_deref()));
                    }
                    if let Some(s) = src.secret {
                        let secret = self.secret(&namespace, &s.name).await?;
                        files.extend(secret_files(&secret, s.items.as_deref()));
                    }
                    if let Some(t) = src.service_account_token {
                        let sa = p
                            .spec
                            .as_ref()
                            .and_then(|s| s.service_account_name.clone())
                            .unwrap_or_else(|| "default".into());
                        files.push((t.path, self.token(&namespace, &sa).await?.into_bytes()));
                    }
                    if let Some(d) = src.downward_api {
                        for item in d.items.unwrap_or_default() {
                            if item.field_ref.as_ref().map(|f| f.field_path.as_str())
                                == Some("metadata.namespace")
                            {
                                files.push((item.path, namespace.clone().into_bytes()));
                            }
                        }
                    }
                }
            }
            for (path, bytes) in files {
                let f = dir.join(&path);
                if let Some(parent) = f.parent() {
                    std::fs::create_dir_all(parent).map_err(io_err("create a volume dir"))?;
                }
                std::fs::write(&f, bytes).map_err(io_err("write a volume file"))?;
            }
            out.push((dir, m.mount_path.clone()));
        }
        let spec = p.spec.clone().unwrap_or_default();
        let sa_name = spec
            .service_account_name
            .clone()
            .unwrap_or_else(|| "default".into());
        let automount = match spec.automount_service_account_token {
            Some(a) => a,
            None => Api::<ServiceAccount>::namespaced(self.client.clone(), &namespace)
                .get(&sa_name)
                .await
                .ok()
                .and_then(|sa| sa.automount_service_account_token)
                .unwrap_or(true),
        };
        if automount && !out.iter().any(|(_, t)| t == SA_DIR) {
            let dir = run.dir.join("serviceaccount");
            std::fs::create_dir_all(&dir).map_err(io_err("create the token volume"))?;
            let token = self.token(&namespace, &sa_name).await?;
            std::fs::write(dir.join("token"), token).map_err(io_err("write the token"))?;
            std::fs::copy(&self.opts.ca_file, dir.join("ca.crt")).map_err(io_err("copy ca.crt"))?;
            std::fs::write(dir.join("namespace"), &namespace).map_err(io_err("write namespace"))?;
            out.push((dir, SA_DIR.into()));
        }
        Ok(out)
    }

    /// A ServiceAccount token from the TokenRequest API, as the kubelet projects it.
    async fn token(&self, namespace: &str, sa: &str) -> Result<String, KubeletError> {
        let api: Api<ServiceAccount> = Api::namespaced(self.client.clone(), namespace);
        let req = TokenRequest {
            spec: Some(TokenRequestSpec {
                audiences: None,
                expiration_seconds: Some(3600 * 4),
                ..Default::default()
            }),
            ..Default::default()
        };
        let answer: TokenRequest = api
            .create_subresource("token", sa, &PostParams::default(), &req)
            .await
            .map_err(api_err(format!("request a token for {namespace}/{sa}")))?;
        answer
            .status
            .and_then(|s| s.token)
            .ok_or_else(|| KubeletError::Pod {
                pod: format!("{namespace}/{sa}"),
                message: "the TokenRequest answer has no token".into(),
            })
    }

    fn spawn(
        &self,
        k: &str,
        c: &Container,
        env: &[(String, String)],
        mounts: &[(PathBuf, String)],
        run: &Run,
    ) -> Result<Child, KubeletError> {
        let fail = |m: String| KubeletError::Pod {
            pod: k.to_string(),
            message: m,
        };
        let command = c
            .command
            .clone()
            .unwrap_or_else(|| vec![self.opts.entrypoint.clone()]);
        let first = command.first().cloned().unwrap_or_default();
        let name = Path::new(&first)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let binary = self
            .opts
            .binaries
            .get(&name)
            .ok_or_else(|| fail(format!("no local binary for command {first:?}")))?;
        let mut args: Vec<String> = command[1..].iter().map(|a| expand(a, env)).collect();
        args.extend(
            c.args
                .clone()
                .unwrap_or_default()
                .iter()
                .map(|a| expand(a, env)),
        );

        let term_path = c
            .termination_message_path
            .clone()
            .unwrap_or_else(|| "/dev/termination-log".into());
        let term_file = run.dir.join("termination-log");
        std::fs::write(&term_file, b"").map_err(io_err("create the termination log"))?;
        let mut script = String::from("set -e\n");
        // A mount over a parent of the pod directories (an emptyDir at /tmp) goes last, or
        // it would hide the sources of the others.
        let root = self.opts.root.display().to_string();
        let mut mounts: Vec<&(PathBuf, String)> = mounts.iter().collect();
        mounts.sort_by_key(|(_, target)| root.starts_with(target.as_str()));
        let quote = |s: &str| format!("'{}'", s.replace('\'', "'\\''"));
        if !Path::new(&term_path).exists() {
            std::fs::write(&term_path, b"")
                .map_err(io_err(format!("create mount point {term_path}")))?;
        }
        script.push_str(&format!(
            "mount --bind {} {}\n",
            quote(&term_file.display().to_string()),
            quote(&term_path)
        ));
        for (host, target) in &mounts {
            std::fs::create_dir_all(target)
                .map_err(io_err(format!("create mount point {target}")))?;
            script.push_str(&format!(
                "mount --bind {} {}\n",
                quote(&host.display().to_string()),
                quote(target)
            ));
        }
        script.push_str("exec \"$@\"\n");
        let log = std::fs::File::create(run.dir.join(format!("log-{}", run.restarts)))
            .map_err(io_err("create the log"))?;
        let log2 = log.try_clone().map_err(io_err("clone the log"))?;
        let mut cmd = Command::new("unshare");
        cmd.args([
            "--mount",
            "--propagation",
            "private",
            "--",
            "sh",
            "-c",
            &script,
            "sh",
        ])
        .arg(binary)
        .args(&args)
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("HOME", run.dir.join("home"))
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(std::process::Stdio::null())
        .stdout(log)
        .stderr(log2)
        .kill_on_drop(true);
        if mounts.iter().any(|(_, t)| t == SA_DIR) {
            cmd.env("KUBERNETES_SERVICE_HOST", &self.opts.api_host)
                .env("KUBERNETES_SERVICE_PORT", self.opts.api_port.to_string());
        }
        cmd.spawn().map_err(io_err(format!("start {k}")))
    }

    /// Notices an exited process; restarts it when its policy says so and its back-off
    /// has passed.
    async fn watch(&mut self, k: &str) {
        let restart = {
            let mut runs = self.runs();
            let Some(r) = runs.get_mut(k) else { return };
            if let Some(c) = r.child.as_mut()
                && let Ok(Some(status)) = c.try_wait()
            {
                let code = status.code().unwrap_or(137);
                let message =
                    std::fs::read_to_string(r.dir.join("termination-log")).unwrap_or_default();
                r.child = None;
                r.ready = false;
                r.ended = Some((code, message, now()));
                let again = match r.restart_policy.as_str() {
                    "Always" => true,
                    "OnFailure" => code != 0,
                    _ => false,
                };
                if again {
                    let factor = 2u32.saturating_pow(r.restarts.clamp(0, 5) as u32);
                    let wait = (self.opts.restart_backoff * factor).min(Duration::from_secs(300));
                    r.restart_at = Some(Instant::now() + wait);
                }
            }
            r.child.is_none() && r.restart_at.is_some_and(|t| Instant::now() >= t)
        };
        if restart {
            let pod = self.runs().get(k).map(|r| r.pod.clone());
            let Some(pod) = pod else { return };
            match self.restart(&pod).await {
                Ok(()) => {}
                Err(e) => eprintln!("{e}"),
            }
        }
    }

    async fn restart(&mut self, p: &Pod) -> Result<(), KubeletError> {
        let k = key(p);
        let spec = p.spec.clone().unwrap_or_default();
        let Some(container) = spec.containers.first().cloned() else {
            return Ok(());
        };
        let (ip, restarts) = {
            let mut runs = self.runs();
            let Some(r) = runs.get_mut(&k) else {
                return Ok(());
            };
            r.restarts += 1;
            r.last = r.ended.take();
            r.restart_at = None;
            (r.ip.clone(), r.restarts)
        };
        let _ = restarts;
        let snapshot = {
            let runs = self.runs();
            let Some(r) = runs.get(&k) else { return Ok(()) };
            Run {
                uid: r.uid.clone(),
                ip: r.ip.clone(),
                dir: r.dir.clone(),
                child: None,
                restart_policy: r.restart_policy.clone(),
                restarts: r.restarts,
                started: r.started.clone(),
                ended: None,
                last: None,
                restart_at: None,
                ready: false,
                live_failures: 0,
                ready_failures: 0,
                next_probe: Instant::now(),
                term_sent: None,
                patched: None,
                pod: r.pod.clone(),
            }
        };
        let mounts = self
            .volumes(
                p,
                &spec.volumes.clone().unwrap_or_default(),
                &container,
                &snapshot,
            )
            .await?;
        let env = self.env(p, &container, &ip).await?;
        let child = self.spawn(&k, &container, &env, &mounts, &snapshot)?;
        let mut runs = self.runs();
        if let Some(r) = runs.get_mut(&k) {
            r.child = Some(child);
            r.started = now();
            r.live_failures = 0;
            r.ready_failures = 0;
            r.next_probe = Instant::now() + Duration::from_secs(1);
        }
        Ok(())
    }

    /// Runs the readiness and liveness probes that are due.
    async fn probe(&mut self, k: &str) {
        let (ip, container, due) = {
            let runs = self.runs();
            let Some(r) = runs.get(k) else { return };
            let c = r
                .pod
                .spec
                .as_ref()
                .and_then(|s| s.containers.first().cloned());
            (
                r.ip.clone(),
                c,
                r.child.is_some() && Instant::now() >= r.next_probe,
            )
        };
        let (Some(c), true) = (container, due) else {
            return;
        };
        let ready = match &c.readiness_probe {
            Some(p) => Some(http_probe(&ip, &c, p).await),
            None => None,
        };
        let live = match &c.liveness_probe {
            Some(p) => Some(http_probe(&ip, &c, p).await),
            None => None,
        };
        let mut runs = self.runs();
        let Some(r) = runs.get_mut(k) else { return };
        let period = c
            .readiness_probe
            .as_ref()
            .and_then(|p| p.period_seconds)
            .unwrap_or(5)
            .clamp(1, 5);
        r.next_probe = Instant::now() + Duration::from_secs(period as u64);
        match ready {
            Some(true) => {
                r.ready = true;
                r.ready_failures = 0;
            }
            Some(false) => {
                r.ready_failures += 1;
                let threshold = c
                    .readiness_probe
                    .as_ref()
                    .and_then(|p| p.failure_threshold)
                    .unwrap_or(3);
                if r.ready_failures >= threshold || !r.ready {
                    r.ready = false;
                }
            }
            None => r.ready = true,
        }
        if live == Some(false) {
            r.live_failures += 1;
            let threshold = c
                .liveness_probe
                .as_ref()
                .and_then(|p| p.failure_threshold)
                .unwrap_or(3);
            let grace = Duration::from_secs(
                c.liveness_probe
                    .as_ref()
                    .and_then(|p| p.initial_delay_seconds)
                    .unwrap_or(0) as u64,
            );
            let _ = grace;
            if r.live_failures >= threshold
                && let Some(child) = r.child.as_mut()
            {
                eprintln!(
                    "kubelet stand-in: {k}: liveness probe failed {threshold} times: restarting"
                );
                let _ = child.start_kill();
            }
        } else {
            r.live_failures = 0;
        }
    }

    /// Writes the pod's status when it changed.
    async fn report(&mut self, k: &str) -> Result<(), KubeletError> {
        let (status, namespace, name) = {
            let runs = self.runs();
            let Some(r) = runs.get(k) else { return Ok(()) };
            (
                pod_status(r),
                r.pod.namespace().unwrap_or_default(),
                r.pod.name_any(),
            )
        };
        let unchanged = self
            .runs()
            .get(k)
            .is_some_and(|r| r.patched.as_ref() == Some(&status));
        if unchanged {
            return Ok(());
        }
        Api::<Pod>::namespaced(self.client.clone(), &namespace)
            .patch_status(
                &name,
                &PatchParams::default(),
                &Patch::Merge(&json!({"status": status})),
            )
            .await
            .map_err(api_err(format!("update the status of pod {k}")))?;
        if let Some(r) = self.runs().get_mut(k) {
            r.patched = Some(status);
        }
        Ok(())
    }

    /// A pod being deleted: SIGTERM, SIGKILL after its grace period, then removal.
    async fn terminate(&mut self, p: &Pod) -> Result<(), KubeletError> {
        let k = key(p);
        let grace = p
            .spec
            .as_ref()
            .and_then(|s| s.termination_grace_period_seconds)
            .unwrap_or(30)
            .max(0) as u64;
        let exited = {
            let mut runs = self.runs();
            let Some(r) = runs.get_mut(&k) else {
                return Ok(());
            };
            match r.child.as_mut() {
                None => true,
                Some(c) => match c.try_wait() {
                    Ok(Some(_)) => true,
                    _ => {
                        match r.term_sent {
                            None => {
                                if let Some(pid) = c.id() {
                                    let _ = std::process::Command::new("kill")
                                        .args(["-TERM", &pid.to_string()])
                                        .status();
                                }
                                r.term_sent = Some(Instant::now());
                            }
                            Some(t) if t.elapsed() > Duration::from_secs(grace) => {
                                let _ = c.start_kill();
                            }
                            Some(_) => {}
                        }
                        false
                    }
                },
            }
        };
        if exited {
            self.finalize(p).await?;
            self.runs().remove(&k);
        }
        Ok(())
    }

    /// Removes a pod whose process has ended (the kubelet's final delete).
    async fn finalize(&self, p: &Pod) -> Result<(), KubeletError> {
        match Api::<Pod>::namespaced(self.client.clone(), &p.namespace().unwrap_or_default())
            .delete(&p.name_any(), &DeleteParams::default().grace_period(0))
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
            Err(source) => Err(KubeletError::Api {
                what: format!("delete pod {}", key(p)),
                source,
            }),
        }
    }

    async fn kill_all(&mut self) {
        let runs: Vec<Run> = self.runs().drain().map(|(_, r)| r).collect();
        for mut r in runs {
            if let Some(c) = r.child.as_mut() {
                let _ = c.kill().await;
            }
        }
    }
}

/// Where ServiceAccount tokens are mounted.
const SA_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

fn secret_value(s: &Secret, key: &str) -> Option<String> {
    if let Some(v) = s.data.as_ref().and_then(|d| d.get(key)) {
        return Some(String::from_utf8_lossy(&v.0).into_owned());
    }
    s.string_data.as_ref().and_then(|d| d.get(key).cloned())
}

fn configmap_files(
    m: &ConfigMap,
    items: Option<&[k8s_openapi::api::core::v1::KeyToPath]>,
) -> Vec<(String, Vec<u8>)> {
    let data = m.data.clone().unwrap_or_default();
    match items {
        Some(items) => items
            .iter()
            .filter_map(|i| {
                data.get(&i.key)
                    .map(|v| (i.path.clone(), v.clone().into_bytes()))
            })
            .collect(),
        None => data.into_iter().map(|(k, v)| (k, v.into_bytes())).collect(),
    }
}

fn secret_files(
    s: &Secret,
    items: Option<&[k8s_openapi::api::core::v1::KeyToPath]>,
) -> Vec<(String, Vec<u8>)> {
    let data: BTreeMap<String, Vec<u8>> = s
        .data
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.0))
        .collect();
    match items {
        Some(items) => items
            .iter()
            .filter_map(|i| data.get(&i.key).map(|v| (i.path.clone(), v.clone())))
            .collect(),
        None => data.into_iter().collect(),
    }
}

/// `$(VAR)` expanded from `env` as the kubelet does (`$$` escapes; unknown stays as is).
pub fn expand(s: &str, env: &[(String, String)]) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(body) = after.strip_prefix('(')
            && let Some(end) = body.find(')')
        {
            let name = &body[..end];
            match env.iter().rev().find(|(n, _)| n == name) {
                Some((_, v)) => out.push_str(v),
                None => {
                    out.push_str("$(");
                    out.push_str(name);
                    out.push(')');
                }
            }
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// An HTTP GET probe against the pod's address: 200–399 passes.
async fn http_probe(ip: &str, c: &Container, p: &Probe) -> bool {
    let Some(get) = &p.http_get else {
        return true;
    };
    let port = match &get.port {
        IntOrString::Int(n) => *n,
        IntOrString::String(name) => c
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref() == Some(name.as_str()))
            .map_or(0, |p| p.container_port),
    };
    let path = get.path.clone().unwrap_or_else(|| "/".into());
    let timeout = Duration::from_secs(p.timeout_seconds.unwrap_or(1).max(1) as u64);
    let attempt = async {
        let mut s = tokio::net::TcpStream::connect((ip, port as u16))
            .await
            .ok()?;
        let req = format!("GET {path} HTTP/1.1\r\nHost: {ip}:{port}\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await.ok()?;
        let mut buf = vec![0u8; 64];
        let n = s.read(&mut buf).await.ok()?;
        let head = String::from_utf8_lossy(&buf[..n]).into_owned();
        head.split_whitespace().nth(1)?.parse::<u16>().ok()
    };
    matches!(tokio::time::timeout(timeout, attempt).await, Ok(Some(code)) if (200..400).contains(&code))
}

/// The pod status the kubelet would report for `r`.
fn pod_status(r: &Run) -> Value {
    let name = r
        .pod
        .spec
        .as_ref()
        .and_then(|s| s.containers.first())
        .map(|c| c.name.clone())
        .unwrap_or_default();
    let image = r
        .pod
        .spec
        .as_ref()
        .and_then(|s| s.containers.first())
        .and_then(|c| c.image.clone())
        .unwrap_or_default();
    let terminated = |(code, message, at): &(i32, String, String)| {
        json!({"terminated": {"exitCode": code, "reason": if *code == 0 { "Completed" } else { "Error" },
                              "message": message, "startedAt": r.started, "finishedAt": at}})
    };
    let running = r.child.is_some();
    let state = if running {
        json!({"running": {"startedAt": r.started}})
    } else if let Some(e) = &r.ended {
        if r.restart_at.is_some() {
            json!({"waiting": {"reason": "CrashLoopBackOff", "message": "back-off restarting the failed container"}})
        } else {
            terminated(e)
        }
    } else {
        json!({"waiting": {"reason": "ContainerCreating"}})
    };
    let last_state = match (&r.ended, &r.last, r.restart_at.is_some()) {
        (Some(e), _, true) => terminated(e),
        (_, Some(l), _) => terminated(l),
        _ => json!({}),
    };
    let ready = running && r.ready;
    let phase = if running || r.restart_at.is_some() {
        "Running"
    } else {
        match &r.ended {
            Some((0, _, _)) => "Succeeded",
            Some(_) => "Failed",
            None => "Pending",
        }
    };
    let cond = |t: &str, ok: bool| json!({"type": t, "status": if ok { "True" } else { "False" }, "lastTransitionTime": r.started});
    json!({
        "phase": phase,
        "hostIP": "127.0.0.1",
        "podIP": r.ip,
        "podIPs": [{"ip": r.ip}],
        "startTime": r.started,
        "conditions": [cond("PodScheduled", true), cond("Initialized", true),
                       cond("ContainersReady", ready), cond("Ready", ready)],
        "containerStatuses": [{"name": name, "image": image, "imageID": "", "ready": ready,
                               "started": running, "restartCount": r.restarts,
                               "state": state, "lastState": last_state}],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_addresses_stay_in_their_block() {
        let net = PodNet {
            second: 77,
            third: 10,
        };
        assert_eq!(net.address(0), "127.77.10.10");
        assert_eq!(net.address(199), "127.77.10.209");
        assert_eq!(net.address(200), "127.77.11.10");
        assert_eq!(
            PodNet {
                second: 0,
                third: 0
            }
            .address(1),
            "127.0.0.11"
        );
    }

    #[test]
    fn expands_like_the_kubelet() {
        let env = vec![("POD_IP".to_string(), "127.0.0.9".to_string())];
        assert_eq!(
            expand("--http=$(POD_IP):8080", &env),
            "--http=127.0.0.9:8080"
        );
        assert_eq!(expand("$$(POD_IP)", &env), "$(POD_IP)");
        assert_eq!(expand("$(NOPE)", &env), "$(NOPE)");
        assert_eq!(expand("a$b", &env), "a$b");
    }
}
