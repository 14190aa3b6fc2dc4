//! The cluster tooling the suite installs is present and real: helm, kubectl, promtool and
//! kubernetes-validate — and the committed CRD passes strict schema validation for every
//! Kubernetes version we support.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::process::Command;

fn run(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{cmd} not runnable ({e}): run `bash e2e/scripts/install-services.sh` and source e2e/scripts/env.sh"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{cmd} {args:?} failed:\n{text}");
    text
}

#[test]
fn helm_kubectl_and_promtool_run() {
    assert!(run("helm", &["version", "--short"]).starts_with("v"));
    assert!(run("kubectl", &["version", "--client"]).contains("Client Version: v1."));
    assert!(run("promtool", &["--version"]).contains("promtool"));
}

#[test]
fn crd_passes_kubernetes_validate_strict_for_1_29_to_1_33() {
    let crd = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../crds/streamingpipelines.spillway.dev.yaml");
    let crd = crd.to_str().unwrap();
    for minor in 29..=33 {
        let version = format!("1.{minor}.0");
        let text = run("kubernetes-validate", &["--strict", "-k", &version, crd]);
        assert!(text.contains("passed"), "{version}: {text}");
    }
}
