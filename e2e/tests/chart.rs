//! The Helm chart `charts/spillway`, rendered by the real `helm` with the default values and
//! every value set in `charts/spillway/ci/`: it lints; every core object passes
//! `kubernetes-validate --strict` for Kubernetes 1.29–1.33; every pod meets the restricted
//! Pod Security profile with a read-only root filesystem; RBAC is least privilege (no `*`,
//! no Secret, a ClusterRole only when watching every namespace); the monitoring objects
//! (kinds kubernetes-validate has no schema for) are checked field by field here;
//! `values.schema.json` rejects bad values naming the field; and the chart's copies of the
//! CRD, the dashboard and the rules equal the originals.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_yaml::Value;

const RELEASE: &str = "sw";
const NAMESPACE: &str = "spillway-system";
/// Kinds of the Prometheus Operator: no schema in kubernetes-validate, checked here.
const MONITORING_KINDS: [&str; 3] = ["ServiceMonitor", "PodMonitor", "PrometheusRule"];
/// Labels of the worker pods the operator creates (docs/operator.md).
const WORKER_LABELS: [(&str, &str); 2] = [
    ("app.kubernetes.io/name", "spillway-worker"),
    ("app.kubernetes.io/managed-by", "spillway-operator"),
];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn chart() -> PathBuf {
    root().join("charts/spillway")
}

/// Runs a tool; `Err` carries stdout and stderr when it exits non-zero.
fn tool(cmd: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(cmd)
        .args(args)
        .env("KUBECONFIG", "/dev/null")
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "{cmd} not runnable ({e}): run `bash e2e/scripts/install-services.sh` and source e2e/scripts/env.sh"
            )
        });
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(text)
    }
}

/// A named set of values: the defaults, or one file of `ci/`.
struct ValueSet {
    name: String,
    file: Option<PathBuf>,
    values: Value,
}

impl ValueSet {
    fn watch_namespaces(&self) -> Vec<String> {
        self.values["watchNamespaces"]
            .as_sequence()
            .map(|s| s.iter().map(|v| v.as_str().unwrap().to_string()).collect())
            .unwrap_or_default()
    }

    fn flag(&self, path: &[&str], default: bool) -> bool {
        let mut v = &self.values;
        for p in path {
            v = &v[*p];
        }
        v.as_bool().unwrap_or(default)
    }
}

fn value_sets() -> Vec<ValueSet> {
    let mut sets = vec![ValueSet {
        name: "default".into(),
        file: None,
        values: Value::Null,
    }];
    let mut files: Vec<PathBuf> = std::fs::read_dir(chart().join("ci"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    for f in files {
        let values = serde_yaml::from_str(&std::fs::read_to_string(&f).unwrap()).unwrap();
        sets.push(ValueSet {
            name: f.file_stem().unwrap().to_string_lossy().into_owned(),
            file: Some(f),
            values,
        });
    }
    assert!(
        sets.len() >= 5,
        "the defaults and at least 4 value sets in charts/spillway/ci/"
    );
    sets
}

fn template_args<'a>(chart: &'a str, file: Option<&'a str>) -> Vec<&'a str> {
    let mut args = vec!["template", RELEASE, chart, "--namespace", NAMESPACE];
    if let Some(f) = file {
        args.extend(["-f", f]);
    }
    args
}

/// One rendered object: its YAML text and its value.
struct Doc {
    text: String,
    value: Value,
}

impl Doc {
    fn kind(&self) -> &str {
        self.value["kind"].as_str().unwrap_or_default()
    }
    fn name(&self) -> &str {
        self.value["metadata"]["name"].as_str().unwrap_or_default()
    }
    fn namespace(&self) -> Option<&str> {
        self.value["metadata"]["namespace"].as_str()
    }
}

fn split(rendered: &str) -> Vec<Doc> {
    let mut docs = vec![];
    let mut chunk = String::new();
    let mut flush = |chunk: &mut String| {
        let value: Value = serde_yaml::from_str(chunk).unwrap_or(Value::Null);
        if value.is_mapping() {
            docs.push(Doc {
                text: std::mem::take(chunk),
                value,
            });
        }
        chunk.clear();
    };
    for line in rendered.lines() {
        if line == "---" {
            flush(&mut chunk);
        } else {
            chunk.push_str(line);
            chunk.push('\n');
        }
    }
    flush(&mut chunk);
    docs
}

fn render(set: &ValueSet) -> Vec<Doc> {
    let chart = chart();
    let file = set.file.as_ref().map(|f| f.to_str().unwrap());
    let out = tool("helm", &template_args(chart.to_str().unwrap(), file))
        .unwrap_or_else(|e| panic!("helm template with {} failed:\n{e}", set.name));
    let docs = split(&out);
    assert!(!docs.is_empty(), "{}: nothing rendered", set.name);
    docs
}

fn strs(v: &Value) -> Vec<&str> {
    v.as_sequence()
        .map(|s| s.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

#[test]
fn helm_lint_passes_with_every_value_set() {
    let chart = chart();
    let chart = chart.to_str().unwrap();
    for set in value_sets() {
        let mut args = vec!["lint", "--strict", chart, "--namespace", NAMESPACE];
        let file = set.file.as_ref().map(|f| f.to_str().unwrap().to_string());
        if let Some(f) = &file {
            args.extend(["-f", f.as_str()]);
        }
        let out = tool("helm", &args).unwrap_or_else(|e| panic!("{}: {e}", set.name));
        assert!(out.contains("0 chart(s) failed"), "{}: {out}", set.name);
    }
}

#[test]
fn every_render_passes_kubernetes_validate_strict_for_1_29_to_1_33() {
    let dir = std::env::temp_dir().join(spillway_e2e::unique("spillway-chart"));
    std::fs::create_dir_all(&dir).unwrap();
    let mut files = vec![];
    let mut objects = 0;
    for set in value_sets() {
        let docs = render(&set);
        let core: Vec<&Doc> = docs
            .iter()
            .filter(|d| !MONITORING_KINDS.contains(&d.kind()))
            .collect();
        for d in docs.iter().filter(|d| MONITORING_KINDS.contains(&d.kind())) {
            assert_eq!(
                d.value["apiVersion"],
                "monitoring.coreos.com/v1",
                "{}: {} {}",
                set.name,
                d.kind(),
                d.name()
            );
        }
        objects += core.len();
        let text: Vec<&str> = core.iter().map(|d| d.text.as_str()).collect();
        let path = dir.join(format!("{}.yaml", set.name));
        std::fs::write(&path, text.join("---\n")).unwrap();
        files.push(path.to_str().unwrap().to_string());
    }
    for minor in 29..=33 {
        let version = format!("1.{minor}.0");
        let mut args = vec!["--strict", "-k", version.as_str()];
        args.extend(files.iter().map(String::as_str));
        let out = tool("kubernetes-validate", &args)
            .unwrap_or_else(|e| panic!("kubernetes-validate {version} rejected a render:\n{e}"));
        assert!(
            !out.contains("WARN") && !out.contains("ERROR"),
            "{version}: every core kind must have a schema and pass:\n{out}"
        );
        assert_eq!(
            out.matches(" passed ").count(),
            objects,
            "{version}: one pass per object:\n{out}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

fn pod_specs(docs: &[Doc]) -> Vec<(&Doc, &Value)> {
    docs.iter()
        .filter_map(|d| match d.kind() {
            "Deployment" | "StatefulSet" | "DaemonSet" | "Job" | "ReplicaSet" => {
                Some((d, &d.value["spec"]["template"]["spec"]))
            }
            "CronJob" => Some((
                d,
                &d.value["spec"]["jobTemplate"]["spec"]["template"]["spec"],
            )),
            "Pod" => Some((d, &d.value["spec"])),
            _ => None,
        })
        .collect()
}

#[test]
fn every_pod_meets_the_restricted_profile_with_a_read_only_root() {
    for set in value_sets() {
        let docs = render(&set);
        let pods = pod_specs(&docs);
        assert_eq!(pods.len(), 1, "{}: one workload, the operator", set.name);
        for (doc, pod) in pods {
            let at = format!("{}: {} {}", set.name, doc.kind(), doc.name());
            let psc = &pod["securityContext"];
            assert_eq!(psc["runAsNonRoot"], true, "{at}: pod runAsNonRoot");
            assert_ne!(psc["runAsUser"], 0, "{at}: pod runs as root");
            for host in ["hostNetwork", "hostPID", "hostIPC"] {
                assert_ne!(pod[host], true, "{at}: {host}");
            }
            for v in pod["volumes"].as_sequence().into_iter().flatten() {
                assert!(v["hostPath"].is_null(), "{at}: hostPath volume {v:?}");
            }
            let containers = pod["containers"]
                .as_sequence()
                .into_iter()
                .flatten()
                .chain(pod["initContainers"].as_sequence().into_iter().flatten());
            for c in containers {
                let name = c["name"].as_str().unwrap();
                let sc = &c["securityContext"];
                assert_eq!(
                    sc["allowPrivilegeEscalation"], false,
                    "{at}/{name}: allowPrivilegeEscalation"
                );
                assert_ne!(sc["privileged"], true, "{at}/{name}: privileged");
                assert!(
                    strs(&sc["capabilities"]["drop"]).contains(&"ALL"),
                    "{at}/{name}: capabilities must drop ALL"
                );
                for add in strs(&sc["capabilities"]["add"]) {
                    assert_eq!(add, "NET_BIND_SERVICE", "{at}/{name}: adds {add}");
                }
                assert_eq!(
                    sc["readOnlyRootFilesystem"], true,
                    "{at}/{name}: readOnlyRootFilesystem"
                );
                assert!(
                    sc["runAsNonRoot"] == true || psc["runAsNonRoot"] == true,
                    "{at}/{name}: runAsNonRoot"
                );
                assert_ne!(sc["runAsUser"], 0, "{at}/{name}: runs as root");
                let seccomp = if sc["seccompProfile"].is_null() {
                    &psc["seccompProfile"]
                } else {
                    &sc["seccompProfile"]
                };
                assert_eq!(
                    seccomp["type"], "RuntimeDefault",
                    "{at}/{name}: seccompProfile"
                );
                for p in c["ports"].as_sequence().into_iter().flatten() {
                    assert!(p["hostPort"].is_null(), "{at}/{name}: hostPort");
                }
            }
        }
    }
}

fn env_of(c: &Value) -> BTreeMap<String, Value> {
    c["env"]
        .as_sequence()
        .into_iter()
        .flatten()
        .map(|e| (e["name"].as_str().unwrap().to_string(), e.clone()))
        .collect()
}

#[test]
fn the_operator_container_runs_spillway_operator_with_probes_and_downward_api() {
    for set in value_sets() {
        let docs = render(&set);
        let deploy = docs.iter().find(|d| d.kind() == "Deployment").unwrap();
        let pod = &deploy.value["spec"]["template"]["spec"];
        let c = &pod["containers"][0];
        let at = &set.name;
        assert_eq!(strs(&c["command"]), ["spillway-operator"], "{at}");
        assert_eq!(c["args"][0], "run", "{at}");
        let image = c["image"].as_str().unwrap();
        let repo = set.values["image"]["repository"]
            .as_str()
            .unwrap_or("spillway-dev/spillway");
        assert!(image.starts_with(&format!("{repo}:")), "{at}: {image}");
        assert!(!image.ends_with(':'), "{at}: image without a tag: {image}");
        let port = &c["ports"][0];
        assert_eq!(port["name"], "http", "{at}");
        assert_eq!(port["containerPort"], 8080, "{at}");
        assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz", "{at}");
        assert_eq!(c["livenessProbe"]["httpGet"]["port"], "http", "{at}");
        assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz", "{at}");
        assert_eq!(c["readinessProbe"]["httpGet"]["port"], "http", "{at}");
        assert!(
            c["resources"]["requests"]["memory"].is_string(),
            "{at}: resources"
        );
        assert!(
            c["resources"]["limits"]["memory"].is_string(),
            "{at}: resources"
        );
        let env = env_of(c);
        assert_eq!(
            env["POD_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"], "metadata.namespace",
            "{at}"
        );
        assert_eq!(
            env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"], "metadata.name",
            "{at}"
        );
        let watch = set.watch_namespaces();
        match env.get("SPILLWAY_WATCH_NAMESPACES") {
            None => assert!(watch.is_empty(), "{at}: namespaces not passed"),
            Some(e) => assert_eq!(e["value"].as_str().unwrap(), watch.join(","), "{at}"),
        }
        let pull_secrets: Vec<&str> = pod["imagePullSecrets"]
            .as_sequence()
            .into_iter()
            .flatten()
            .map(|s| s["name"].as_str().unwrap())
            .collect();
        let wanted: Vec<&str> = set.values["imagePullSecrets"]
            .as_sequence()
            .into_iter()
            .flatten()
            .map(|s| s["name"].as_str().unwrap())
            .collect();
        assert_eq!(pull_secrets, wanted, "{at}: imagePullSecrets");
        if let Some(policy) = set.values["image"]["pullPolicy"].as_str() {
            assert_eq!(c["imagePullPolicy"], policy, "{at}");
        }
    }
}

#[test]
fn custom_image_pull_secrets_and_resources_are_rendered() {
    let set = value_sets()
        .into_iter()
        .find(|s| s.name == "custom-image-values")
        .unwrap();
    let docs = render(&set);
    let deploy = docs.iter().find(|d| d.kind() == "Deployment").unwrap();
    let c = &deploy.value["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(
        c["image"],
        "registry.example.com:5000/data-platform/spillway:0.1.1-rc.1"
    );
    assert_eq!(c["imagePullPolicy"], "Always");
    assert_eq!(c["resources"], set.values["resources"]);
    assert_eq!(deploy.value["spec"]["replicas"], 2);
    assert!(
        deploy.value["spec"]["template"]["spec"]["securityContext"]["runAsUser"].is_null(),
        "runAsUser: null leaves the user to the platform"
    );
    assert!(strs(&c["args"]).contains(&"--lease-name=spillway-leader"));
    assert!(strs(&c["args"]).contains(&"--progress-timeout=5s"));
}

fn rules_of(d: &Doc) -> &Vec<Value> {
    d.value["rules"].as_sequence().unwrap()
}

#[test]
fn rbac_is_least_privilege_and_scoped_to_the_watched_namespaces() {
    // What docs/operator.md says the operator does, and nothing more.
    let allowed: BTreeMap<(&str, &str), BTreeSet<&str>> = [
        (
            ("spillway.dev", "streamingpipelines"),
            &["get", "list", "watch"][..],
        ),
        (("spillway.dev", "streamingpipelines/status"), &["patch"]),
        (
            ("spillway.dev", "streamingpipelines/finalizers"),
            &["update"],
        ),
        (
            ("", "configmaps"),
            &["get", "list", "watch", "create", "patch", "delete"],
        ),
        (
            ("", "services"),
            &["get", "list", "watch", "create", "patch", "delete"],
        ),
        (
            ("apps", "deployments"),
            &["get", "list", "watch", "create", "patch", "delete"],
        ),
        (
            ("policy", "poddisruptionbudgets"),
            &["get", "list", "watch", "create", "patch", "delete"],
        ),
        (
            ("networking.k8s.io", "networkpolicies"),
            &["get", "list", "watch", "create", "patch", "delete"],
        ),
        (
            ("batch", "jobs"),
            &["get", "list", "watch", "create", "patch", "delete"],
        ),
        (
            ("batch", "cronjobs"),
            &["get", "list", "watch", "create", "patch", "delete"],
        ),
        (("", "pods"), &["get", "list"]),
        (("events.k8s.io", "events"), &["create", "patch"]),
        (
            ("coordination.k8s.io", "leases"),
            &["create", "get", "update"],
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k, v.iter().copied().collect()))
    .collect();

    for set in value_sets() {
        let at = &set.name;
        let docs = render(&set);
        let sa = docs
            .iter()
            .find(|d| d.kind() == "Deployment")
            .map(|d| {
                d.value["spec"]["template"]["spec"]["serviceAccountName"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .unwrap();
        let mut granted: BTreeSet<(String, String, String)> = BTreeSet::new();
        for d in docs
            .iter()
            .filter(|d| d.kind() == "Role" || d.kind() == "ClusterRole")
        {
            assert!(
                !d.text.contains('*'),
                "{at}: {} {} has a wildcard:\n{}",
                d.kind(),
                d.name(),
                d.text
            );
            for rule in rules_of(d) {
                assert!(
                    rule["nonResourceURLs"].is_null(),
                    "{at}: {} grants non-resource URLs",
                    d.name()
                );
                for group in strs(&rule["apiGroups"]) {
                    for resource in strs(&rule["resources"]) {
                        assert!(
                            !resource.starts_with("secrets"),
                            "{at}: {} grants {resource}",
                            d.name()
                        );
                        for verb in strs(&rule["verbs"]) {
                            assert!(
                                allowed
                                    .get(&(group, resource))
                                    .is_some_and(|v| v.contains(verb)),
                                "{at}: {} grants {verb} on {group}/{resource}, which the operator does not need",
                                d.name()
                            );
                            granted.insert((group.into(), resource.into(), verb.into()));
                        }
                    }
                }
            }
        }
        if set.flag(&["rbac", "create"], true) {
            let expected: BTreeSet<(String, String, String)> = allowed
                .iter()
                .filter(|((g, _), _)| {
                    *g != "coordination.k8s.io"
                        || set.flag(&["operator", "leaderElection", "enabled"], true)
                })
                .flat_map(|((g, r), verbs)| {
                    verbs
                        .iter()
                        .map(|v| (g.to_string(), r.to_string(), v.to_string()))
                })
                .collect();
            assert_eq!(granted, expected, "{at}: every needed permission granted");
        }

        let cluster_roles: Vec<&Doc> = docs.iter().filter(|d| d.kind() == "ClusterRole").collect();
        let cluster_bindings = docs
            .iter()
            .filter(|d| d.kind() == "ClusterRoleBinding")
            .count();
        let watch = set.watch_namespaces();
        let roles_in = |ns: &str| {
            docs.iter()
                .filter(|d| d.kind() == "Role" && d.namespace() == Some(ns))
                .count()
        };
        if watch.is_empty() {
            assert_eq!(cluster_roles.len(), 1, "{at}: one ClusterRole");
            assert_eq!(cluster_bindings, 1, "{at}: one ClusterRoleBinding");
        } else {
            assert!(
                cluster_roles.is_empty() && cluster_bindings == 0,
                "{at}: nothing cluster-wide when watching {watch:?}"
            );
            for ns in &watch {
                let extra = usize::from(ns == NAMESPACE);
                assert_eq!(roles_in(ns), 1 + extra, "{at}: a Role in {ns}");
                assert!(
                    docs.iter()
                        .any(|d| d.kind() == "RoleBinding" && d.namespace() == Some(ns)),
                    "{at}: a RoleBinding in {ns}"
                );
            }
        }
        for b in docs
            .iter()
            .filter(|d| d.kind() == "RoleBinding" || d.kind() == "ClusterRoleBinding")
        {
            let subject = &b.value["subjects"][0];
            assert_eq!(subject["kind"], "ServiceAccount", "{at}");
            assert_eq!(subject["name"].as_str(), Some(sa.as_str()), "{at}");
            assert_eq!(subject["namespace"], NAMESPACE, "{at}");
            let role = b.value["roleRef"]["name"].as_str().unwrap();
            let kind = b.value["roleRef"]["kind"].as_str().unwrap();
            assert!(
                docs.iter().any(|r| r.kind() == kind
                    && r.name() == role
                    && r.namespace() == b.namespace()),
                "{at}: {} binds missing {kind} {role}",
                b.name()
            );
        }
        // The Lease: in the release namespace, get/update only of the operator's own one.
        let leader_role = docs
            .iter()
            .find(|d| d.kind() == "Role" && d.name().ends_with("-leader-election"));
        if set.flag(&["operator", "leaderElection", "enabled"], true) {
            let role = leader_role.unwrap_or_else(|| panic!("{at}: no Lease role"));
            assert_eq!(role.namespace(), Some(NAMESPACE));
            let deploy = docs.iter().find(|d| d.kind() == "Deployment").unwrap();
            let args = strs(&deploy.value["spec"]["template"]["spec"]["containers"][0]["args"]);
            let lease = args
                .iter()
                .find_map(|a| a.strip_prefix("--lease-name="))
                .unwrap();
            for rule in rules_of(role) {
                if strs(&rule["verbs"]) != ["create"] {
                    assert_eq!(strs(&rule["resourceNames"]), [lease], "{at}");
                }
            }
        } else {
            assert!(leader_role.is_none(), "{at}: a Lease role without election");
        }
    }
}

#[test]
fn network_policy_is_on_by_default_and_lets_the_operator_reach_its_workers() {
    for set in value_sets() {
        let at = &set.name;
        let docs = render(&set);
        let policies: Vec<&Doc> = docs
            .iter()
            .filter(|d| d.kind() == "NetworkPolicy")
            .collect();
        if !set.flag(&["networkPolicy", "enabled"], true) {
            assert!(policies.is_empty(), "{at}: networkPolicy.enabled false");
            continue;
        }
        assert_eq!(policies.len(), 1, "{at}");
        let spec = &policies[0].value["spec"];
        let deploy = docs.iter().find(|d| d.kind() == "Deployment").unwrap();
        assert_eq!(
            spec["podSelector"]["matchLabels"], deploy.value["spec"]["selector"]["matchLabels"],
            "{at}: the policy selects the operator pods"
        );
        assert_eq!(strs(&spec["policyTypes"]), ["Ingress", "Egress"], "{at}");
        assert_eq!(spec["ingress"][0]["ports"][0]["port"], "http", "{at}");
        let egress = spec["egress"].as_sequence().unwrap();
        let to_workers = egress
            .iter()
            .find(|r| r["ports"][0]["port"] == 8080)
            .unwrap_or_else(|| panic!("{at}: no egress to the workers"));
        let labels = &to_workers["to"][0]["podSelector"]["matchLabels"];
        for (k, v) in WORKER_LABELS {
            assert_eq!(labels[k], v, "{at}");
        }
        let watch = set.watch_namespaces();
        let ns_sel = &to_workers["to"][0]["namespaceSelector"];
        if watch.is_empty() {
            assert!(
                ns_sel.as_mapping().is_some_and(|m| m.is_empty()),
                "{at}: all namespaces"
            );
        } else {
            assert_eq!(
                strs(&ns_sel["matchExpressions"][0]["values"]),
                watch.iter().map(String::as_str).collect::<Vec<_>>(),
                "{at}"
            );
        }
        assert!(
            egress.iter().any(|r| r["ports"][0]["port"] == 53),
            "{at}: DNS"
        );
        assert!(
            egress.iter().any(|r| r["ports"]
                .as_sequence()
                .is_some_and(|p| p.iter().any(|p| p["port"] == 6443))),
            "{at}: the API server"
        );
    }
}

#[test]
fn monitoring_objects_are_off_by_default_and_well_formed_when_on() {
    let sets = value_sets();
    let default = render(&sets[0]);
    for kind in MONITORING_KINDS {
        assert!(
            !default.iter().any(|d| d.kind() == kind),
            "{kind} must be off by default"
        );
    }
    let set = sets.iter().find(|s| s.name == "monitoring-values").unwrap();
    let docs = render(set);
    let find = |kind: &str| {
        let found: Vec<&Doc> = docs.iter().filter(|d| d.kind() == kind).collect();
        assert_eq!(found.len(), 1, "one {kind}");
        found[0]
    };
    for kind in MONITORING_KINDS {
        let d = find(kind);
        assert_eq!(d.value["apiVersion"], "monitoring.coreos.com/v1", "{kind}");
        assert_eq!(d.namespace(), Some(NAMESPACE), "{kind}");
        assert_eq!(
            d.value["metadata"]["labels"]["release"], "kube-prometheus-stack",
            "{kind}: extra labels for the Prometheus selector"
        );
        let top: BTreeSet<&str> = d
            .value
            .as_mapping()
            .unwrap()
            .keys()
            .map(|k| k.as_str().unwrap())
            .collect();
        assert_eq!(
            top,
            ["apiVersion", "kind", "metadata", "spec"].into(),
            "{kind}"
        );
    }

    // ServiceMonitor → the operator Service's port `http`, honouring the metrics' labels.
    let sm = &find("ServiceMonitor").value["spec"];
    let service = find("Service");
    let service_labels = service.value["metadata"]["labels"].as_mapping().unwrap();
    for (k, v) in sm["selector"]["matchLabels"].as_mapping().unwrap() {
        assert_eq!(
            service_labels.get(k),
            Some(v),
            "ServiceMonitor selector {k:?}"
        );
    }
    assert_eq!(strs(&sm["namespaceSelector"]["matchNames"]), [NAMESPACE]);
    let endpoint = &sm["endpoints"][0];
    assert!(
        service.value["spec"]["ports"]
            .as_sequence()
            .unwrap()
            .iter()
            .any(|p| p["name"] == endpoint["port"]),
        "ServiceMonitor port {:?} is not a Service port",
        endpoint["port"]
    );
    assert_eq!(endpoint["path"], "/metrics");
    assert_eq!(endpoint["interval"], "15s");
    assert_eq!(endpoint["honorLabels"], true);
    let sm_keys: BTreeSet<&str> = sm
        .as_mapping()
        .unwrap()
        .keys()
        .map(|k| k.as_str().unwrap())
        .collect();
    assert_eq!(
        sm_keys,
        ["endpoints", "namespaceSelector", "selector"].into()
    );

    // PodMonitor → the workers the operator creates, on their port `http`.
    let pm = &find("PodMonitor").value["spec"];
    let labels = pm["selector"]["matchLabels"].as_mapping().unwrap();
    assert_eq!(labels.len(), WORKER_LABELS.len());
    for (k, v) in WORKER_LABELS {
        assert_eq!(pm["selector"]["matchLabels"][k], v);
    }
    assert_eq!(pm["namespaceSelector"]["any"], true);
    assert_eq!(pm["podMetricsEndpoints"][0]["port"], "http");
    assert_eq!(pm["podMetricsEndpoints"][0]["path"], "/metrics");

    // PrometheusRule → exactly the groups of config/prometheus/spillway-rules.yaml.
    let rule = &find("PrometheusRule").value["spec"];
    let config: Value = serde_yaml::from_str(
        &std::fs::read_to_string(root().join("config/prometheus/spillway-rules.yaml")).unwrap(),
    )
    .unwrap();
    assert_eq!(rule, &config);
    for group in rule["groups"].as_sequence().unwrap() {
        assert!(group["name"].is_string());
        for r in group["rules"].as_sequence().unwrap() {
            assert!(r["alert"].is_string() && r["expr"].is_string(), "{r:?}");
        }
    }

    // With a namespace list the PodMonitor looks only there.
    let single = sets
        .iter()
        .find(|s| s.name == "single-namespace-values")
        .unwrap();
    let chart = chart();
    let file = single.file.as_ref().unwrap().to_str().unwrap();
    let mut args = template_args(chart.to_str().unwrap(), Some(file));
    args.extend(["--set", "monitoring.podMonitor.enabled=true"]);
    let docs = split(&tool("helm", &args).unwrap());
    let pm = docs.iter().find(|d| d.kind() == "PodMonitor").unwrap();
    assert_eq!(
        strs(&pm.value["spec"]["namespaceSelector"]["matchNames"]),
        single.watch_namespaces()
    );
}

#[test]
fn the_dashboard_configmap_carries_the_sidecar_label_and_the_dashboard() {
    let sets = value_sets();
    let docs = render(&sets[0]);
    let cm = docs
        .iter()
        .find(|d| d.kind() == "ConfigMap" && d.name().ends_with("-dashboards"))
        .expect("the dashboard ConfigMap is on by default");
    assert_eq!(cm.value["metadata"]["labels"]["grafana_dashboard"], "1");
    let json: serde_json::Value = serde_json::from_str(
        cm.value["data"]["spillway-pipelines.json"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    let config: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("config/grafana/spillway-pipelines.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(json, config);

    let monitoring = render(sets.iter().find(|s| s.name == "monitoring-values").unwrap());
    let cm = monitoring
        .iter()
        .find(|d| d.kind() == "ConfigMap" && d.name().ends_with("-dashboards"))
        .unwrap();
    assert_eq!(cm.namespace(), Some("monitoring"));
    assert_eq!(
        cm.value["metadata"]["annotations"]["grafana_folder"],
        "Spillway"
    );
}

/// Each case: values that must be refused, and the field the message must name.
const INVALID_VALUES: &[(&str, &str)] = &[
    ("image: {pullPolicy: Sometimes}", "/image/pullPolicy"),
    ("replicaCount: -1", "/replicaCount"),
    ("watchNamespaces: [Not_A_Namespace]", "/watchNamespaces/0"),
    (
        "networkPolicy: {enabled: \"yes\"}",
        "/networkPolicy/enabled",
    ),
    (
        "operator: {progressInterval: 30 seconds}",
        "/operator/progressInterval",
    ),
    ("monitorin: {podMonitor: {enabled: true}}", "monitorin"),
    (
        "resources: {limits: {memory: lots}}",
        "/resources/limits/memory",
    ),
    ("imagePullSecrets: [regcred]", "/imagePullSecrets/0"),
    ("runAsUser: 0", "/runAsUser"),
    ("operator: {logFormat: xml}", "/operator/logFormat"),
    (
        "monitoring: {serviceMonitor: {enabled: true, interval: often}}",
        "/monitoring/serviceMonitor/interval",
    ),
];

#[test]
fn values_schema_rejects_invalid_values_naming_the_field() {
    assert!(INVALID_VALUES.len() >= 5);
    let dir = std::env::temp_dir().join(spillway_e2e::unique("spillway-chart-bad"));
    std::fs::create_dir_all(&dir).unwrap();
    let chart = chart();
    let chart = chart.to_str().unwrap();
    for (i, (values, field)) in INVALID_VALUES.iter().enumerate() {
        let path = dir.join(format!("bad-{i}.yaml"));
        std::fs::write(&path, values).unwrap();
        let file = path.to_str().unwrap();
        let err = tool("helm", &template_args(chart, Some(file)))
            .err()
            .unwrap_or_else(|| panic!("helm template accepted {values:?}"));
        assert!(
            err.contains("values don't meet the specifications of the schema")
                && err.contains(field),
            "the message for {values:?} should name {field}:\n{err}"
        );
        let err = tool("helm", &["lint", chart, "-f", file])
            .err()
            .unwrap_or_else(|| panic!("helm lint accepted {values:?}"));
        assert!(
            err.contains(field),
            "helm lint on {values:?} should name {field}:\n{err}"
        );
    }
    // A rule the schema cannot express, enforced by the templates.
    let path = dir.join("two-leaders.yaml");
    std::fs::write(
        &path,
        "replicaCount: 2\noperator: {leaderElection: {enabled: false}}\n",
    )
    .unwrap();
    let err = tool("helm", &template_args(chart, Some(path.to_str().unwrap())))
        .expect_err("two replicas without leader election must be refused");
    assert!(err.contains("operator.leaderElection.enabled"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

fn same_file(a: &Path, b: &Path) {
    let (x, y) = (
        std::fs::read(a).unwrap_or_else(|e| panic!("{}: {e}", a.display())),
        std::fs::read(b).unwrap_or_else(|e| panic!("{}: {e}", b.display())),
    );
    assert!(
        x == y,
        "{} differs from {}: copy it (`cp {} {}`)",
        b.display(),
        a.display(),
        a.strip_prefix(root()).unwrap_or(a).display(),
        b.strip_prefix(root()).unwrap_or(b).display()
    );
}

#[test]
fn the_charts_copies_equal_the_originals() {
    let root = root();
    let chart = chart();
    // The CRD (operator/tests/crd_drift.rs also checks both against the generator).
    same_file(
        &root.join("crds/streamingpipelines.spillway.dev.yaml"),
        &chart.join("crds/streamingpipelines.spillway.dev.yaml"),
    );
    same_file(
        &root.join("config/prometheus/spillway-rules.yaml"),
        &chart.join("files/spillway-rules.yaml"),
    );
    same_file(
        &root.join("config/grafana/spillway-pipelines.json"),
        &chart.join("files/spillway-pipelines.json"),
    );
}

#[test]
fn notes_tell_the_user_the_next_command() {
    let chart = chart();
    for (set, namespace) in [
        (vec![], "<namespace>"),
        (vec!["--set", "watchNamespaces={analytics}"], "analytics"),
    ] {
        let mut args = vec![
            "install",
            RELEASE,
            chart.to_str().unwrap(),
            "--namespace",
            NAMESPACE,
            "--dry-run=client",
        ];
        args.extend(set);
        let out = tool("helm", &args).unwrap();
        let notes = out.split("NOTES:").nth(1).expect("NOTES rendered");
        assert!(
            notes.contains(&format!(
                "kubectl -n {NAMESPACE} rollout status deployment/{RELEASE}-spillway"
            )),
            "{notes}"
        );
        assert!(
            notes.contains(&format!("kubectl apply -n {namespace} -f")),
            "{notes}"
        );
        assert!(
            notes.contains(&format!("kubectl get sp -n {namespace}")),
            "{notes}"
        );
    }
}
