//! The harness every cluster test shares: one [`Suite`] per test — its own namespaces
//! (Pod Security "restricted"), the current CRD, a kubelet stand-in with its own Node and
//! block of pod addresses, and (on request) the chart installed as its own release watching
//! only the test's namespace — so the tests of this binary run side by side on one control
//! plane. The manifests and readers are in [`crate::fixtures`].

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use spillway_e2e::kubelet::{Kubelet, KubeletOptions, PodNet};

/// The one line printed when no cluster is configured outside CI.
const SKIPPED: &str = "cluster e2e SKIPPED: SPILLWAY_E2E_KUBECONFIG is not set (start one with `bash e2e/scripts/k8s.sh start`)";
/// The CRD's name.
pub const CRD: &str = "streamingpipelines.spillway.dev";
/// The image the chart and the pipelines name; the kubelet stand-in runs local binaries.
pub const IMAGE: &str = "spillway-dev/spillway:0.1.0";
/// The CRD file the chart installs.
pub const CRD_FILE: &str = "charts/spillway/crds/streamingpipelines.spillway.dev.yaml";

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The admin kubeconfig of the test cluster. Outside CI without one: prints [`SKIPPED`] and
/// returns `None`; in CI (`CI` set) a missing one fails the test.
pub fn kubeconfig() -> Option<PathBuf> {
    let Some(kubeconfig) = std::env::var_os("SPILLWAY_E2E_KUBECONFIG") else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must run the cluster e2e: SPILLWAY_E2E_KUBECONFIG is not set (e2e/scripts/test-all.sh starts the control plane)"
        );
        println!("{SKIPPED}");
        return None;
    };
    let kubeconfig = PathBuf::from(kubeconfig);
    assert!(
        kubeconfig.is_file(),
        "SPILLWAY_E2E_KUBECONFIG={} is not a file",
        kubeconfig.display()
    );
    Some(kubeconfig)
}

/// Fails unless Kafka and moto answer.
pub fn require_services() {
    spillway_e2e::require("kafka", &spillway_e2e::kafka_bootstrap()).unwrap();
    spillway_e2e::require(
        "moto (s3)",
        &spillway_e2e::host_port(&spillway_e2e::s3_endpoint()),
    )
    .unwrap();
}

/// `(repository, tag)` of an image reference (a registry port is not a tag).
pub fn split_image(image: &str) -> (&str, &str) {
    match image.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => (repo, tag),
        _ => (image, "latest"),
    }
}

/// Where the built binaries are: target/<profile>/deps/cluster-<hash> → target/<profile>.
pub fn binaries_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent().unwrap().parent().unwrap().to_path_buf()
}

/// The built `spillway` binary.
pub fn spillway_bin() -> PathBuf {
    binaries_dir().join("spillway")
}

/// One test's slice of the cluster.
pub struct Suite {
    /// The admin kubeconfig.
    pub kubeconfig: PathBuf,
    /// The test's namespace (pipelines, workers).
    pub namespace: String,
    /// The operator's namespace (the release's).
    pub operator_ns: String,
    /// The Helm release (and the operator's full name, Lease and ClusterRole-free RBAC).
    pub release: String,
    /// A runtime for the kube client and the kubelet stand-in.
    pub rt: tokio::runtime::Runtime,
    /// An admin client.
    pub client: kube::Client,
    /// Where the stand-in keeps pod directories (logs, volumes).
    pub pods_root: PathBuf,
    kubelet: Option<Kubelet>,
    installed: bool,
}

impl Suite {
    /// Namespaces, the CRD of this checkout, and a kubelet stand-in (Node `spillway-<test>`,
    /// pod addresses from block `block`).
    pub fn start(kubeconfig: PathBuf, test: &str, block: u8) -> Self {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let client = kube_client(&rt, &kubeconfig);
        let pods_root = std::env::temp_dir().join(spillway_e2e::unique(&format!("kubelet-{test}")));
        std::fs::create_dir_all(&pods_root).unwrap();
        let namespace = spillway_e2e::unique(&format!("e2e-{test}"));
        let operator_ns = spillway_e2e::unique(&format!("spillway-{test}"));
        let (api_host, api_port) = api_host_port(&kubeconfig);
        let bin = binaries_dir();
        let kubelet = rt
            .block_on(Kubelet::start(
                client.clone(),
                KubeletOptions {
                    node: format!("spillway-e2e-{test}"),
                    ca_file: write_ca(&kubeconfig, &pods_root),
                    root: pods_root.clone(),
                    binaries: BTreeMap::from([
                        ("spillway".to_string(), bin.join("spillway")),
                        (
                            "spillway-operator".to_string(),
                            bin.join("spillway-operator"),
                        ),
                    ]),
                    entrypoint: "spillway".into(),
                    api_host,
                    api_port,
                    restart_backoff: Duration::from_secs(2),
                    namespaces: vec![namespace.clone(), operator_ns.clone()],
                    pod_net: PodNet::from_env(block),
                },
            ))
            .unwrap();
        let suite = Self {
            kubeconfig,
            namespace,
            operator_ns,
            release: format!("spillway-e2e-{test}"),
            rt,
            client,
            pods_root,
            kubelet: Some(kubelet),
            installed: false,
        };
        suite.run("kubectl", &["version"]);
        suite.apply_crd();
        // Pod Security "restricted": the operator's and the workers' pods are admitted only
        // if they meet it.
        for ns in [&suite.namespace, &suite.operator_ns] {
            suite.run("kubectl", &["create", "namespace", ns]);
            suite.run(
                "kubectl",
                &[
                    "label",
                    "namespace",
                    ns,
                    "pod-security.kubernetes.io/enforce=restricted",
                ],
            );
        }
        suite
    }

    /// The CRD of this checkout, applied server-side (Helm installs `crds/` only when the
    /// CRD is absent and never updates or deletes it; the CRD outlives every test, as it
    /// outlives releases in a real cluster).
    pub fn apply_crd(&self) {
        let file = repo_root().join(CRD_FILE);
        self.run(
            "kubectl",
            &[
                "apply",
                "--server-side",
                "--force-conflicts",
                "--field-manager=spillway-e2e",
                "-f",
                file.to_str().unwrap(),
            ],
        );
        self.run(
            "kubectl",
            &[
                "wait",
                &format!("crd/{CRD}"),
                "--for=condition=Established",
                "--timeout=60s",
            ],
        );
    }

    /// `helm install` of the chart as this test's release, watching the test's namespace
    /// only, with `--set` values on top.
    pub fn install_operator(&mut self, sets: &[&str]) {
        let chart = repo_root().join("charts/spillway");
        let (repository, tag) = split_image(IMAGE);
        let image_repository = format!("image.repository={repository}");
        let image_tag = format!("image.tag={tag}");
        let watch = format!("watchNamespaces={{{}}}", self.namespace);
        let mut args = vec![
            "install",
            self.release.as_str(),
            chart.to_str().unwrap(),
            "--namespace",
            self.operator_ns.as_str(),
            "--set",
            &image_repository,
            "--set",
            &image_tag,
            "--set",
            &watch,
            "--set",
            "operator.progressInterval=3s",
        ];
        for s in sets {
            args.extend(["--set", s]);
        }
        args.extend(["--wait", "--timeout", "5m"]);
        self.installed = true;
        self.run("helm", &args);
        self.run(
            "kubectl",
            &[
                "--namespace",
                &self.operator_ns,
                "rollout",
                "status",
                &format!("deployment/{}", self.release),
                "--timeout=180s",
            ],
        );
    }

    /// The kubelet stand-in.
    pub fn kubelet(&self) -> &Kubelet {
        self.kubelet.as_ref().unwrap()
    }

    fn command(&self, tool: &str, args: &[&str]) -> Command {
        let mut c = Command::new(tool);
        c.args(args).env("KUBECONFIG", &self.kubeconfig);
        c
    }

    /// Runs a tool; `Err` holds its output when it fails.
    pub fn try_run(
        &self,
        tool: &str,
        args: &[&str],
        stdin: Option<&str>,
    ) -> Result<String, String> {
        let mut cmd = self.command(tool, args);
        cmd.stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("{tool} not runnable ({e}): run `bash e2e/scripts/install-services.sh` and source e2e/scripts/env.sh"));
        if let Some(input) = stdin {
            child
                .stdin
                .take()
                .unwrap()
                .write_all(input.as_bytes())
                .unwrap();
        }
        let out = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        if out.status.success() {
            Ok(stdout)
        } else {
            Err(format!(
                "{tool} {args:?} failed:\n{stdout}{}",
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    }

    pub fn run(&self, tool: &str, args: &[&str]) -> String {
        self.try_run(tool, args, None)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// kubectl in the test's namespace.
    pub fn kubectl(&self, args: &[&str]) -> String {
        let mut all = vec!["--namespace", self.namespace.as_str()];
        all.extend(args);
        self.run("kubectl", &all)
    }

    /// kubectl in the test's namespace, output parsed as JSON.
    pub fn kubectl_json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.extend(["-o", "json"]);
        serde_json::from_str(&self.kubectl(&all)).unwrap()
    }

    /// `kubectl apply -f -` of a manifest (YAML or JSON) in the test's namespace.
    pub fn apply(&self, manifest: &str) {
        self.try_run(
            "kubectl",
            &["--namespace", &self.namespace, "apply", "-f", "-"],
            Some(manifest),
        )
        .unwrap_or_else(|e| panic!("{e}\n--- manifest ---\n{manifest}"));
    }

    /// [`Self::apply`] of a JSON manifest.
    pub fn apply_json(&self, manifest: &Value) {
        self.apply(&serde_json::to_string_pretty(manifest).unwrap());
    }

    /// The pipeline as JSON, or `None` once it is gone.
    pub fn pipeline(&self, name: &str) -> Option<Value> {
        self.try_run(
            "kubectl",
            &[
                "--namespace",
                &self.namespace,
                "get",
                "streamingpipeline",
                name,
                "-o",
                "json",
                "--ignore-not-found",
            ],
            None,
        )
        .ok()
        .filter(|s| !s.trim().is_empty())
        .map(|s| serde_json::from_str(&s).unwrap())
    }

    /// The pipeline's status (`null` until it has one).
    pub fn status(&self, name: &str) -> Option<Value> {
        self.pipeline(name).map(|p| p["status"].clone())
    }

    /// The worker pods of a pipeline, by name.
    pub fn worker_pods(&self, pipeline: &str) -> Vec<Value> {
        let pods = self.kubectl_json(&[
            "get",
            "pods",
            "-l",
            &format!("app.kubernetes.io/instance={pipeline}"),
        ]);
        let mut items = pods["items"].as_array().cloned().unwrap_or_default();
        items.sort_by_key(|p| {
            p["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        });
        items
    }

    /// The Events about an object of the test's namespace, as `(type, reason, message)`.
    pub fn events(&self, name: &str) -> Vec<(String, String, String)> {
        let ev = self.kubectl_json(&[
            "get",
            "events",
            "--field-selector",
            &format!("involvedObject.name={name}"),
        ]);
        let s = |v: &Value| v.as_str().unwrap_or_default().to_string();
        ev["items"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|e| (s(&e["type"]), s(&e["reason"]), s(&e["message"])))
            .collect()
    }

    /// Runs `spillway produce` here (a local process) into `topic`.
    pub fn produce(&self, topic: &str, count: u64, seed: u64, partitions: i32) {
        let out = Command::new(spillway_bin())
            .args([
                "produce",
                "--bootstrap",
                &spillway_e2e::kafka_bootstrap(),
                "--topic",
                topic,
                "--count",
                &count.to_string(),
                "--seed",
                &seed.to_string(),
                "--partitions",
                &partitions.to_string(),
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "spillway produce failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Polls `f` every 2 s until it returns `Some`, or fails after `timeout` showing what the
    /// namespace holds and the tails of its pods' logs.
    pub fn wait_for<T>(
        &self,
        what: &str,
        timeout: Duration,
        mut f: impl FnMut() -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(v) = f() {
                return v;
            }
            if Instant::now() > deadline {
                panic!(
                    "timed out after {timeout:?} waiting for {what}\n{}",
                    self.diagnostics()
                );
            }
            std::thread::sleep(Duration::from_secs(2));
        }
    }

    /// Polls `f` every 2 s until it returns an empty list or `timeout` has passed; returns
    /// the last list (what is still missing).
    pub fn wait_for_empty<T>(&self, timeout: Duration, mut f: impl FnMut() -> Vec<T>) -> Vec<T> {
        let deadline = Instant::now() + timeout;
        loop {
            let missing = f();
            if missing.is_empty() || Instant::now() > deadline {
                return missing;
            }
            std::thread::sleep(Duration::from_secs(2));
        }
    }

    /// What the namespace holds: objects, pipelines' statuses, Events, pod log tails.
    pub fn diagnostics(&self) -> String {
        let get = |ns: &str, what: &str| {
            self.try_run(
                "kubectl",
                &["--namespace", ns, "get", what, "-o", "wide"],
                None,
            )
            .unwrap_or_else(|e| e)
        };
        let mut out = get(
            &self.namespace,
            "streamingpipelines,deployments,jobs,pods,events",
        );
        out.push_str(&get(&self.operator_ns, "deployments,pods,leases"));
        let statuses = self
            .try_run(
                "kubectl",
                &[
                    "--namespace",
                    &self.namespace,
                    "get",
                    "streamingpipelines",
                    "-o",
                    "jsonpath={range .items[*]}{.metadata.name}: {.status}{\"\\n\"}{end}",
                ],
                None,
            )
            .unwrap_or_else(|e| e);
        out.push_str(&statuses);
        for entry in std::fs::read_dir(&self.pods_root)
            .into_iter()
            .flatten()
            .flatten()
        {
            let dir = entry.path();
            for log in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                let name = log.file_name().to_string_lossy().into_owned();
                if !name.starts_with("log-") {
                    continue;
                }
                let text = std::fs::read_to_string(log.path()).unwrap_or_default();
                let lines: Vec<&str> = text.lines().collect();
                let tail = lines[lines.len().saturating_sub(15)..].join("\n");
                out.push_str(&format!(
                    "\n--- {}/{name} ---\n{tail}\n",
                    dir.file_name().unwrap_or_default().to_string_lossy()
                ));
            }
        }
        out
    }
}

impl Drop for Suite {
    fn drop(&mut self) {
        if self.installed {
            let _ = self.try_run(
                "helm",
                &[
                    "uninstall",
                    &self.release,
                    "--namespace",
                    &self.operator_ns,
                    "--wait",
                ],
                None,
            );
        }
        for ns in [self.namespace.clone(), self.operator_ns.clone()] {
            let _ = self.try_run(
                "kubectl",
                &["delete", "namespace", &ns, "--wait=true", "--timeout=120s"],
                None,
            );
        }
        if let Some(k) = self.kubelet.take() {
            self.rt.block_on(k.shutdown());
        }
        println!(
            "cluster e2e: cleaned up namespaces {} and {}",
            self.namespace, self.operator_ns
        );
    }
}

/// An admin client from the kubeconfig.
pub fn kube_client(rt: &tokio::runtime::Runtime, kubeconfig: &Path) -> kube::Client {
    spillway_e2e::kubelet::install_crypto_provider();
    rt.block_on(async {
        let kc = kube::config::Kubeconfig::read_from(kubeconfig).unwrap();
        let config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
            .await
            .unwrap();
        kube::Client::try_from(config).unwrap()
    })
}

fn kubeconfig_cluster(kubeconfig: &Path) -> serde_yaml::Value {
    let kc: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(kubeconfig).unwrap()).unwrap();
    kc["clusters"][0]["cluster"].clone()
}

/// The cluster's CA (from the admin kubeconfig) as `dir/ca.crt`.
pub fn write_ca(kubeconfig: &Path, dir: &Path) -> PathBuf {
    let cluster = kubeconfig_cluster(kubeconfig);
    let ca = dir.join("ca.crt");
    if let Some(data) = cluster["certificate-authority-data"].as_str() {
        use base64::Engine;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(data)
            .unwrap();
        std::fs::write(&ca, bytes).unwrap();
    } else {
        let file = cluster["certificate-authority"].as_str().unwrap();
        std::fs::copy(file, &ca).unwrap();
    }
    ca
}

/// The API server's URL.
pub fn api_server(kubeconfig: &Path) -> String {
    let cluster = kubeconfig_cluster(kubeconfig);
    cluster["server"]
        .as_str()
        .unwrap()
        .trim_end_matches('/')
        .to_string()
}

fn api_host_port(kubeconfig: &Path) -> (String, u16) {
    let server = api_server(kubeconfig);
    let hostport = server.trim_start_matches("https://");
    let (h, p) = hostport.rsplit_once(':').unwrap();
    (h.to_string(), p.parse().unwrap())
}
