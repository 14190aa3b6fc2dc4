//! Invalid manifests are rejected with the right field path by `validate` (Rust) and by the
//! CRD's CEL rules evaluated client-side with kube-cel — the same cases, the same paths. The
//! table is shared with the cluster e2e, which submits each case to a real API server.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "support/invalid_manifests.rs"]
mod invalid_manifests;

use invalid_manifests::{CEL_RULES, SCHEMA, base};
use kube_cel::Validator;
use serde_json::Value;
use spillway_api::{crd, manifest, validate};

fn rust_problems(v: &Value) -> Vec<(String, String)> {
    let text = serde_yaml::to_string(v).unwrap();
    let p = manifest::parse(&text).unwrap_or_else(|e| panic!("parse: {e}"));
    match validate::validate(&p.spec) {
        Ok(()) => vec![],
        Err(problems) => problems
            .0
            .into_iter()
            .map(|p| (p.path, p.message))
            .collect(),
    }
}

fn cel_problems(schema: &Value, v: &Value) -> Vec<(String, String)> {
    match Validator::new().validate(schema, v, None) {
        Ok(()) => vec![],
        Err(errors) => errors
            .iter()
            .map(|e| (e.field_path.clone(), e.message.clone()))
            .collect(),
    }
}

#[test]
fn base_and_samples_are_valid_for_both() {
    let schema = crd::openapi_schema().unwrap();
    assert_eq!(rust_problems(&base()), vec![]);
    assert_eq!(cel_problems(&schema, &base()), vec![]);
    let samples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/samples");
    let mut n = 0;
    for entry in std::fs::read_dir(samples).unwrap() {
        let path = entry.unwrap().path();
        let v: Value = serde_yaml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(rust_problems(&v), vec![], "{}", path.display());
        assert_eq!(cel_problems(&schema, &v), vec![], "{}", path.display());
        n += 1;
    }
    assert!(n >= 3, "expected the three samples, found {n}");
}

#[test]
fn invalid_manifests_fail_rust_and_cel_at_the_same_path() {
    assert!(CEL_RULES.len() >= 12);
    let schema = crd::openapi_schema().unwrap();
    let mut failures = vec![];
    for case in CEL_RULES {
        let v = case.manifest();
        let rust = rust_problems(&v);
        let cel = cel_problems(&schema, &v);
        let at = |problems: &[(String, String)]| {
            problems
                .iter()
                .find(|(p, _)| p == case.path)
                .map(|(_, m)| m.clone())
        };
        match (at(&rust), at(&cel)) {
            (Some(r), Some(c)) if r == c => {}
            (r, c) => failures.push(format!(
                "{}: expected {}\n  rust: {rust:?} ({r:?})\n  cel: {cel:?} ({c:?})",
                case.name, case.path
            )),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_rule_is_in_the_crd() {
    fn collect(v: &Value, out: &mut Vec<(String, String)>) {
        match v {
            Value::Object(m) => {
                if let Some(Value::Array(rules)) = m.get("x-kubernetes-validations") {
                    for r in rules {
                        out.push((
                            r["rule"].as_str().unwrap().to_string(),
                            r["message"].as_str().unwrap().to_string(),
                        ));
                    }
                }
                m.values().for_each(|x| collect(x, out));
            }
            Value::Array(a) => a.iter().for_each(|x| collect(x, out)),
            _ => {}
        }
    }
    let mut found = vec![];
    collect(&crd::openapi_schema().unwrap(), &mut found);
    for r in spillway_api::rules::ALL {
        assert!(
            found.contains(&(r.rule.to_string(), r.message.to_string())),
            "missing rule {}",
            r.rule
        );
    }
    // Every rule of the CRD is one of ours (some, like URI_SCHEME, sit on several fields).
    for (rule, message) in &found {
        assert!(
            spillway_api::rules::ALL
                .iter()
                .any(|r| r.rule == rule && r.message == message),
            "the CRD has a rule spillway_api::rules does not: {rule}"
        );
    }
    let uri_fields = found
        .iter()
        .filter(|(r, _)| r == spillway_api::rules::URI_SCHEME.rule)
        .count();
    assert_eq!(
        uri_fields, 4,
        "sink (delta, parquet), checkpoint, dead-letter table"
    );
}

#[test]
fn schema_constraints_are_checked_in_rust_too() {
    let mut failures = vec![];
    for case in SCHEMA {
        let problems = rust_problems(&case.manifest());
        if !problems.iter().any(|(p, _)| p == case.path) {
            failures.push(format!(
                "{}: expected {}, got {problems:?}",
                case.name, case.path
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_rule_is_documented() {
    let doc = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/api.md"),
    )
    .unwrap();
    for r in spillway_api::rules::ALL {
        assert!(
            doc.contains(&format!("| {} |", r.message)),
            "docs/api.md lacks the rule message {:?}",
            r.message
        );
    }
}
