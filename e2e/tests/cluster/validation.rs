//! Every invalid manifest of the shared table (`operator/api/tests/support/
//! invalid_manifests.rs`) is refused by the real API server — the CRD's schema and CEL rules
//! — at the field path `spillway validate` reports, and the table's base manifest passes both.
//! The server is asked with a dry-run create, so nothing is stored.

use std::collections::BTreeSet;
use std::process::Command;

use kube::Api;
use kube::api::{ApiResource, DynamicObject, PostParams};
use serde_json::Value;
use spillway_api::StreamingPipeline;

use crate::harness::{self, Suite};
use crate::invalid_manifests::{CEL_RULES, Case, SCHEMA, base};

/// What the API server answered a dry-run create with.
#[derive(Debug)]
enum Answer {
    /// Created (dry run).
    Accepted,
    /// Refused: HTTP status and the `(field, message)` of each cause.
    Refused(u16, Vec<(String, String)>),
}

impl Answer {
    fn fields(&self) -> BTreeSet<&str> {
        match self {
            Self::Accepted => BTreeSet::new(),
            Self::Refused(_, causes) => causes.iter().map(|(f, _)| f.as_str()).collect(),
        }
    }
}

/// A dry-run create of the pipeline in `namespace`.
fn dry_run_create(suite: &Suite, namespace: &str, manifest: &Value) -> Answer {
    let resource = ApiResource::erase::<StreamingPipeline>(&());
    let api: Api<DynamicObject> = Api::namespaced_with(suite.client.clone(), namespace, &resource);
    let mut object: DynamicObject = serde_json::from_value(manifest.clone()).unwrap();
    object.metadata.namespace = Some(namespace.into());
    let params = PostParams {
        dry_run: true,
        field_manager: Some("spillway-e2e".into()),
    };
    match suite.rt.block_on(api.create(&params, &object)) {
        Ok(_) => Answer::Accepted,
        Err(kube::Error::Api(status)) => Answer::Refused(
            status.code,
            status
                .details
                .map(|d| d.causes)
                .unwrap_or_default()
                .into_iter()
                .map(|c| (c.field, c.message))
                .collect(),
        ),
        Err(e) => panic!("dry-run create failed: {e}"),
    }
}

/// `spillway validate -f` of the manifest: the `(path, message)` of each problem.
fn spillway_validate(dir: &std::path::Path, case: &str, manifest: &Value) -> Vec<(String, String)> {
    let file = dir.join(format!("{}.json", case.replace(' ', "-")));
    std::fs::write(&file, serde_json::to_vec_pretty(manifest).unwrap()).unwrap();
    let out = Command::new(harness::spillway_bin())
        .args(["validate", "-f"])
        .arg(&file)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.success() {
        return vec![];
    }
    stderr
        .lines()
        .filter_map(|l| l.strip_prefix("  "))
        .filter_map(|l| l.split_once(": "))
        .map(|(p, m)| (p.to_string(), m.to_string()))
        .collect()
}

#[test]
fn invalid_manifests_are_refused_by_the_api_server_at_validates_paths() {
    let Some(kubeconfig) = harness::kubeconfig() else {
        return;
    };
    let suite = Suite::start(kubeconfig, "valid", 5);
    let dir = suite.pods_root.join("manifests");
    std::fs::create_dir_all(&dir).unwrap();
    let namespace = suite.namespace.clone();

    let ok = dry_run_create(&suite, &namespace, &base());
    assert!(
        matches!(ok, Answer::Accepted),
        "the table's base manifest is refused: {ok:?}"
    );
    assert_eq!(spillway_validate(&dir, "base", &base()), vec![]);

    let mut failures = vec![];
    let mut check = |case: &Case, same_message: bool| {
        let manifest = case.manifest();
        let validate = spillway_validate(&dir, case.name, &manifest);
        let server = dry_run_create(&suite, &namespace, &manifest);
        let validate_msg = validate
            .iter()
            .find(|(p, _)| p == case.path)
            .map(|(_, m)| m.clone());
        let server_msgs: Vec<&str> = match &server {
            Answer::Refused(422, causes) => causes
                .iter()
                .filter(|(f, _)| f == case.path)
                .map(|(_, m)| m.as_str())
                .collect(),
            _ => vec![],
        };
        let problem = match (&validate_msg, server_msgs.is_empty()) {
            (None, _) => Some(format!("spillway validate does not report {}", case.path)),
            (Some(_), true) => Some(format!(
                "the API server does not refuse it at {} (fields {:?})",
                case.path,
                server.fields()
            )),
            (Some(m), false)
                if same_message && !server_msgs.iter().any(|s| s.contains(m.as_str())) =>
            {
                Some(format!(
                    "the API server's message differs from validate's {m:?}"
                ))
            }
            _ => None,
        };
        if let Some(p) = problem {
            failures.push(format!(
                "{}: {p}\n    validate: {validate:?}\n    server: {server:?}",
                case.name
            ));
        }
    };
    for case in CEL_RULES {
        check(case, true);
    }
    for case in SCHEMA {
        check(case, false);
    }
    assert!(
        failures.is_empty(),
        "{} of {} invalid manifests differ:\n{}",
        failures.len(),
        CEL_RULES.len() + SCHEMA.len(),
        failures.join("\n")
    );
    println!(
        "the API server refused all {} invalid manifests at validate's paths",
        CEL_RULES.len() + SCHEMA.len()
    );
}
