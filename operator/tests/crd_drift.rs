//! The committed CRDs (`crds/` and the chart's `crds/`) equal what `spillway-operator crd`
//! generates from the types. Regenerate with `SPILLWAY_UPDATE_CRDS=1 cargo test -p
//! spillway-operator --test crd_drift` (or `spillway-operator crd > <file>`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::process::Command;

const FILE: &str = "streamingpipelines.spillway.dev.yaml";

#[test]
fn committed_crds_match_the_generator() {
    let out = Command::new(env!("CARGO_BIN_EXE_spillway-operator"))
        .arg("crd")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let generated = String::from_utf8(out.stdout).unwrap();
    assert!(generated.contains("kind: CustomResourceDefinition"));
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let update = std::env::var_os("SPILLWAY_UPDATE_CRDS").is_some();
    let mut drift = vec![];
    for dir in ["crds", "charts/spillway/crds"] {
        let path = root.join(dir).join(FILE);
        if update {
            std::fs::write(&path, &generated).unwrap();
            continue;
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        if committed != generated {
            drift.push(format!("{dir}/{FILE}"));
        }
    }
    assert!(
        drift.is_empty(),
        "CRD drift in {drift:?}: regenerate with `SPILLWAY_UPDATE_CRDS=1 cargo test -p spillway-operator --test crd_drift`"
    );
}

#[test]
fn crd_has_subresources_printer_columns_and_names() {
    let out = Command::new(env!("CARGO_BIN_EXE_spillway-operator"))
        .arg("crd")
        .output()
        .unwrap();
    let crd: serde_yaml::Value = serde_yaml::from_slice(&out.stdout).unwrap();
    let names = &crd["spec"]["names"];
    assert_eq!(names["shortNames"][0], "sp");
    assert_eq!(names["categories"][0], "spillway");
    let v = &crd["spec"]["versions"][0];
    assert!(v["subresources"]["status"].is_mapping());
    assert_eq!(
        v["subresources"]["scale"]["specReplicasPath"],
        ".spec.replicas"
    );
    assert_eq!(
        v["subresources"]["scale"]["statusReplicasPath"],
        ".status.replicas"
    );
    assert_eq!(
        v["subresources"]["scale"]["labelSelectorPath"],
        ".status.selector"
    );
    let cols: Vec<&str> = v["additionalPrinterColumns"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(cols, ["Phase", "Ready", "Replicas", "Lag", "Rows/s", "Age"]);
}
