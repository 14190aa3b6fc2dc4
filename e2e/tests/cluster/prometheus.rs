//! A real Prometheus (the Debian package's server) watches the run: the jobs of
//! `config/prometheus/scrape-configs.yaml` — their relabelling as shipped — find the worker
//! and operator pods of the test API server, Prometheus scrapes them at their pod addresses,
//! evaluates `config/prometheus/spillway-rules.yaml` as shipped, and answers over its HTTP
//! API: every query of the Grafana dashboard returns series, and poison records make
//! `SpillwayDeadLetters` fire.
//!
//! Debian builds Prometheus without Kubernetes service discovery (its NEWS: "Kubernetes
//! support has been completely removed"; `kubernetes_sd_configs` does not parse), so the
//! test stands in for it: each job's `kubernetes_sd_configs` becomes an `http_sd_configs`
//! on [`PodDiscovery`], which lists the pods from the API server with a ServiceAccount token
//! (allowed only to list and watch pods in the test's namespaces) and serves them with the
//! `__meta_kubernetes_*` labels of Kubernetes SD's role `pod` — one target per container
//! port, `__address__` the pod IP and port.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use serde_json::{Value, json};

use crate::fixtures::{self, pipeline};
use crate::harness::{self, Suite};

const NAME: &str = "e2e-watched";
/// A pipeline the operator refuses (its name cannot name a Service), so the dashboard's
/// "reconciliations that failed" query has something to show.
const INVALID: &str = "e2e.watched";

/// The watched pipeline: bad records to a dead-letter topic, event time from `ts`.
pub fn manifest(namespace: &str, topic: &str) -> Value {
    let mut p = pipeline(namespace, NAME, topic);
    p["spec"]["errors"] = json!({
        "onBadRecord": "deadLetter",
        "deadLetter": {"kafka": {"topic": format!("{topic}-dlq")}},
    });
    p["spec"]["eventTime"] = json!({"column": "ts", "allowedLateness": "1h"});
    p
}

/// The Prometheus process; killed by its pid on drop.
struct Prometheus {
    child: Child,
    url: String,
    dir: PathBuf,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Prometheus {
    /// `GET /api/v1/<path>`'s `data`, or `None` while Prometheus does not answer it.
    fn api(&self, path: &str, query: &[(&str, &str)]) -> Option<Value> {
        let (code, body) = fixtures::http_get(&format!("{}/api/v1/{path}", self.url), query);
        if code != 200 {
            return None;
        }
        let v: Value = serde_json::from_str(&body).ok()?;
        (v["status"] == "success").then(|| v["data"].clone())
    }

    /// The series an instant query returns.
    fn query(&self, expr: &str) -> Vec<Value> {
        self.api("query", &[("query", expr)])
            .and_then(|d| d["result"].as_array().cloned())
            .unwrap_or_default()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("prometheus.log")).unwrap_or_default()
    }
}

/// The shipped scrape jobs with their Kubernetes discovery served by [`PodDiscovery`] at
/// `sd_url`, every 2 s; rules evaluated every 2 s.
fn config(sd_url: &str) -> String {
    let shipped: serde_yaml::Value = serde_yaml::from_str(
        &std::fs::read_to_string(
            harness::repo_root().join("config/prometheus/scrape-configs.yaml"),
        )
        .unwrap(),
    )
    .unwrap();
    let mut jobs = shipped["scrape_configs"].as_sequence().unwrap().clone();
    for job in &mut jobs {
        let sd = job.as_mapping_mut().unwrap();
        let kubernetes = sd.remove("kubernetes_sd_configs").unwrap();
        assert_eq!(kubernetes[0]["role"], "pod", "{kubernetes:?}");
        sd.insert(
            "http_sd_configs".into(),
            serde_yaml::from_str(&format!("[{{url: '{sd_url}', refresh_interval: 2s}}]")).unwrap(),
        );
        sd.insert("scrape_interval".into(), "2s".into());
    }
    let rules = harness::repo_root().join("config/prometheus/spillway-rules.yaml");
    let config = json!({
        "global": {"scrape_interval": "2s", "evaluation_interval": "2s"},
        "rule_files": [rules.canonicalize().unwrap()],
        "scrape_configs": serde_json::to_value(&jobs).unwrap(),
    });
    serde_yaml::to_string(&config).unwrap()
}

/// Kubernetes SD's role `pod`, over Prometheus's HTTP SD protocol: the pods of the test's
/// namespaces, read from the API server as the `prometheus` ServiceAccount.
struct PodDiscovery {
    url: String,
    stop: tokio_util::sync::CancellationToken,
}

impl Drop for PodDiscovery {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// `[a-zA-Z0-9_]` of a Kubernetes label name, as Prometheus sanitises it.
fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

/// One HTTP SD target group per container port of each pod with an IP.
fn target_groups(pods: &[k8s_openapi::api::core::v1::Pod]) -> Value {
    let mut groups = vec![];
    for p in pods {
        let Some(ip) = p.status.as_ref().and_then(|s| s.pod_ip.clone()) else {
            continue;
        };
        let mut labels = serde_json::Map::new();
        let mut put = |k: String, v: &str| {
            labels.insert(k, Value::String(v.to_string()));
        };
        put(
            "__meta_kubernetes_namespace".into(),
            p.metadata.namespace.as_deref().unwrap_or_default(),
        );
        put(
            "__meta_kubernetes_pod_name".into(),
            p.metadata.name.as_deref().unwrap_or_default(),
        );
        put("__meta_kubernetes_pod_ip".into(), &ip);
        let phase = p
            .status
            .as_ref()
            .and_then(|s| s.phase.clone())
            .unwrap_or_default();
        put("__meta_kubernetes_pod_phase".into(), &phase);
        for (k, v) in p.metadata.labels.iter().flatten() {
            put(format!("__meta_kubernetes_pod_label_{}", sanitize(k)), v);
            put(
                format!("__meta_kubernetes_pod_labelpresent_{}", sanitize(k)),
                "true",
            );
        }
        for c in &p.spec.as_ref().unwrap().containers {
            for port in c.ports.iter().flatten() {
                let mut l = labels.clone();
                let mut put = |k: &str, v: &str| {
                    l.insert(k.to_string(), Value::String(v.to_string()));
                };
                put("__meta_kubernetes_pod_container_name", &c.name);
                put(
                    "__meta_kubernetes_pod_container_port_name",
                    port.name.as_deref().unwrap_or_default(),
                );
                put(
                    "__meta_kubernetes_pod_container_port_number",
                    &port.container_port.to_string(),
                );
                put(
                    "__meta_kubernetes_pod_container_port_protocol",
                    port.protocol.as_deref().unwrap_or("TCP"),
                );
                groups.push(
                    json!({"targets": [format!("{ip}:{}", port.container_port)], "labels": l}),
                );
            }
        }
    }
    Value::Array(groups)
}

/// Serves [`target_groups`] of the pods `client` may list in `namespaces`.
fn start_discovery(suite: &Suite, client: kube::Client, namespaces: Vec<String>) -> PodDiscovery {
    use k8s_openapi::api::core::v1::Pod;
    let stop = tokio_util::sync::CancellationToken::new();
    let token = stop.clone();
    let listener = suite
        .rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let url = format!("http://{}/targets", listener.local_addr().unwrap());
    let app = axum::Router::new().route(
        "/targets",
        axum::routing::get(move || {
            let client = client.clone();
            let namespaces = namespaces.clone();
            async move {
                let mut pods = vec![];
                for ns in &namespaces {
                    let api: kube::Api<Pod> = kube::Api::namespaced(client.clone(), ns);
                    match api.list(&Default::default()).await {
                        Ok(list) => pods.extend(list.items),
                        Err(e) => {
                            return Err((
                                axum::http::StatusCode::BAD_GATEWAY,
                                format!("list pods in {ns}: {e}"),
                            ));
                        }
                    }
                }
                Ok(axum::Json(target_groups(&pods)))
            }
        }),
    );
    suite.rt.spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async move { token.cancelled().await })
            .await;
    });
    PodDiscovery { url, stop }
}

/// A client that is the `prometheus` ServiceAccount (its token, the cluster's CA).
fn service_account_client(suite: &Suite, token: &Path, dir: &Path) -> kube::Client {
    let ca = std::fs::read(harness::write_ca(&suite.kubeconfig, dir)).unwrap();
    use base64::Engine;
    let kubeconfig = json!({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "e2e", "cluster": {
            "server": harness::api_server(&suite.kubeconfig),
            "certificate-authority-data": base64::engine::general_purpose::STANDARD.encode(ca),
        }}],
        "users": [{"name": "prometheus", "user": {"token": std::fs::read_to_string(token).unwrap()}}],
        "contexts": [{"name": "e2e", "context": {"cluster": "e2e", "user": "prometheus"}}],
        "current-context": "e2e",
    });
    let file = dir.join("prometheus.kubeconfig");
    std::fs::write(&file, serde_json::to_vec(&kubeconfig).unwrap()).unwrap();
    harness::kube_client(&suite.rt, &file)
}

/// A ServiceAccount that may list and watch the pods of the test's namespaces, and a token.
fn service_account(suite: &Suite, dir: &Path) -> PathBuf {
    let ns = &suite.namespace;
    suite.kubectl(&["create", "serviceaccount", "prometheus"]);
    for target in [&suite.namespace, &suite.operator_ns] {
        suite.run(
            "kubectl",
            &[
                "--namespace",
                target,
                "create",
                "role",
                "prometheus",
                "--verb=get,list,watch",
                "--resource=pods",
            ],
        );
        suite.run(
            "kubectl",
            &[
                "--namespace",
                target,
                "create",
                "rolebinding",
                "prometheus",
                "--role=prometheus",
                &format!("--serviceaccount={ns}:prometheus"),
            ],
        );
    }
    let token = suite.kubectl(&["create", "token", "prometheus", "--duration=2h"]);
    let file = dir.join("token");
    std::fs::write(&file, token.trim()).unwrap();
    file
}

fn start_prometheus(suite: &Suite) -> (Prometheus, PodDiscovery) {
    let run = std::env::var_os("SPILLWAY_RUN")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let dir = run.join(spillway_e2e::unique("prometheus"));
    std::fs::create_dir_all(dir.join("data")).unwrap();
    let token = service_account(suite, &dir);
    let client = service_account_client(suite, &token, &dir);
    let discovery = start_discovery(
        suite,
        client,
        vec![suite.namespace.clone(), suite.operator_ns.clone()],
    );
    let config = dir.join("prometheus.yml");
    std::fs::write(&config, self::config(&discovery.url)).unwrap();
    let port = spillway_e2e::free_port().unwrap();
    let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
    let child = Command::new("prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--log.level=warn")
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("prometheus not runnable ({e}): run `bash e2e/scripts/install-services.sh promtool` (Debian package prometheus)"));
    let p = Prometheus {
        child,
        url: format!("http://127.0.0.1:{port}"),
        dir,
    };
    suite.wait_for("Prometheus ready", Duration::from_secs(60), || {
        let (code, _) = fixtures::http_get(&format!("{}/-/ready", p.url), &[]);
        (code == 200).then_some(())
    });
    (p, discovery)
}

/// Records that are no HsuTestEvent (a truncated varint), to partition 0.
fn produce_poison(topic: &str, n: usize) {
    let producer: BaseProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", spillway_e2e::kafka_bootstrap())
        .create()
        .unwrap();
    for i in 0..n {
        let key = format!("poison-{i}");
        producer
            .send(
                BaseRecord::to(topic)
                    .partition(0)
                    .key(&key)
                    .payload(&[0xffu8, 0xff, 0xff][..]),
            )
            .map_err(|(e, _)| e)
            .unwrap();
    }
    producer.flush(Duration::from_secs(30)).unwrap();
}

/// Every `expr` of the dashboard's panels, with the variables filled in for `namespace`.
fn dashboard_queries(namespace: &str) -> Vec<(String, String)> {
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(harness::repo_root().join(spillway_e2e::observability::DASHBOARD))
            .unwrap(),
    )
    .unwrap();
    fn walk(v: &Value, out: &mut Vec<(String, String)>) {
        for panel in v["panels"].as_array().into_iter().flatten() {
            for t in panel["targets"].as_array().into_iter().flatten() {
                if let Some(expr) = t["expr"].as_str() {
                    let title = panel["title"].as_str().unwrap_or_default();
                    out.push((title.to_string(), expr.to_string()));
                }
            }
            walk(panel, out);
        }
    }
    let mut out = vec![];
    walk(&dashboard, &mut out);
    for v in dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
    {
        if let Some(q) = v["definition"].as_str()
            && let Some(inner) = q.strip_prefix("label_values(")
        {
            // label_values(metric{…}, label) → the series of the metric.
            let metric = inner.rsplit_once(',').map_or(inner, |(m, _)| m);
            out.push((format!("variable {}", v["name"]), metric.to_string()));
        }
    }
    out.into_iter()
        .map(|(title, expr)| {
            let expr = expr
                .replace("$namespace", namespace)
                .replace("$pipeline", ".*")
                .replace("$__rate_interval", "1m");
            (title, expr)
        })
        .collect()
}

#[test]
fn prometheus_scrapes_the_pods_answers_the_dashboard_and_fires_an_alert() {
    let Some(kubeconfig) = harness::kubeconfig() else {
        return;
    };
    harness::require_services();
    let mut suite = Suite::start(kubeconfig, "prom", 15);
    suite.install_operator(&[]);
    let namespace = suite.namespace.clone();
    suite.kubectl(&[
        "create",
        "secret",
        "generic",
        "s3",
        "--from-literal=id=test",
        "--from-literal=key=test",
    ]);
    let (prometheus, _discovery) = start_prometheus(&suite);

    let topic = spillway_e2e::unique("watched");
    suite.produce(&topic, 3_000, 11, 2);
    suite.apply_json(&manifest(&namespace, &topic));
    let mut invalid = pipeline(&namespace, INVALID, &topic);
    invalid["spec"]["replicas"] = json!(0);
    suite.apply_json(&invalid);

    // The pods' own addresses are the targets, and they are up.
    let worker = suite.wait_for("a ready worker", Duration::from_secs(180), || {
        let pods = suite.worker_pods(NAME);
        let p = pods.first()?;
        let ready = p["status"]["containerStatuses"][0]["ready"] == true;
        ready.then(|| p["status"]["podIP"].as_str().unwrap().to_string())
    });
    let operator = suite
        .run(
            "kubectl",
            &[
                "--namespace",
                &suite.operator_ns,
                "get",
                "pods",
                "-l",
                "app.kubernetes.io/component=operator",
                "-o",
                "jsonpath={.items[0].status.podIP}",
            ],
        )
        .trim()
        .to_string();
    let targets = suite.wait_for("both targets up", Duration::from_secs(120), || {
        let t = prometheus.api("targets", &[("state", "active")])?;
        let up = |job: &str, ip: &str| {
            t["activeTargets"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|x| {
                    x["labels"]["job"] == job
                        && x["scrapeUrl"] == format!("http://{ip}:8080/metrics").as_str()
                        && x["health"] == "up"
                })
        };
        (up("spillway-workers", &worker) && up("spillway-operator", &operator)).then_some(t)
    });
    assert!(
        targets["activeTargets"]
            .as_array()
            .unwrap()
            .iter()
            .all(|x| x["labels"]["namespace"] == namespace.as_str()
                || x["labels"]["namespace"] == suite.operator_ns.as_str()),
        "only the test's namespaces: {targets}"
    );

    // Rows flow; then poison records, twice (an alert on increase() needs the series to
    // exist before it grows).
    suite.wait_for("3000 rows in Prometheus", Duration::from_secs(180), || {
        let r = prometheus.query(&format!(
            "sum(spillway_output_rows_total{{namespace=\"{namespace}\", pipeline=\"{NAME}\"}}) >= 3000"
        ));
        (!r.is_empty()).then_some(())
    });
    produce_poison(&topic, 5);
    suite.wait_for("dead letters in Prometheus", Duration::from_secs(120), || {
        let r = prometheus.query(&format!(
            "sum(spillway_dead_letters_total{{namespace=\"{namespace}\", pipeline=\"{NAME}\"}}) >= 5"
        ));
        (!r.is_empty()).then_some(())
    });
    produce_poison(&topic, 5);
    let alert = suite.wait_for(
        "SpillwayDeadLetters firing",
        Duration::from_secs(120),
        || {
            let data = prometheus.api("alerts", &[])?;
            data["alerts"]
                .as_array()?
                .iter()
                .find(|a| {
                    a["labels"]["alertname"] == "SpillwayDeadLetters"
                        && a["labels"]["namespace"] == namespace.as_str()
                        && a["labels"]["pipeline"] == NAME
                        && a["state"] == "firing"
                })
                .cloned()
        },
    );
    assert_eq!(alert["labels"]["severity"], "warning", "{alert}");
    assert!(
        alert["labels"]["reason"]
            .as_str()
            .is_some_and(|r| !r.is_empty()),
        "{alert}"
    );

    // Every query of the dashboard returns series (the operator's per-pipeline ones include
    // the refused pipeline's InvalidSpec reconciliations).
    suite.wait_for(
        "the refused pipeline Failed",
        Duration::from_secs(60),
        || (suite.status(INVALID)?["phase"] == "Failed").then_some(()),
    );
    let queries = dashboard_queries(&namespace);
    assert!(queries.len() >= 30, "{queries:?}");
    let empty = suite.wait_for_empty(Duration::from_secs(60), || {
        queries
            .iter()
            .filter(|(_, q)| prometheus.query(q).is_empty())
            .map(|(t, q)| format!("{t}: {q}"))
            .collect::<Vec<_>>()
    });
    assert!(
        empty.is_empty(),
        "{} of {} dashboard queries return no series:\n{}\n--- prometheus log ---\n{}",
        empty.len(),
        queries.len(),
        empty.join("\n"),
        prometheus.log()
    );
    println!(
        "prometheus: targets {worker}:8080 and {operator}:8080 up, {} dashboard queries answered, SpillwayDeadLetters fired ({})",
        queries.len(),
        alert["labels"]["reason"]
    );
}
