//! The `Dockerfile` (no container engine runs here, so it is read, not built): a multi-stage
//! build of both binaries from the workspace's real package and binary names, a runtime
//! stage that runs as a numeric non-root user with `spillway` as the entrypoint (the
//! operator's worker pods pass only arguments) and `spillway-operator` on the PATH (the
//! chart's command), base images without a registry host, and the build tools rdkafka and
//! aws-lc-sys need.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn read(path: &str) -> String {
    std::fs::read_to_string(root().join(path)).unwrap()
}

/// The Dockerfile's instructions, continuation lines joined, comments dropped.
fn instructions() -> Vec<(String, String)> {
    let mut out = vec![];
    let mut current = String::new();
    for line in read("Dockerfile").lines() {
        let line = line.trim();
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        if let Some(head) = line.strip_suffix('\\') {
            current.push_str(head);
            current.push(' ');
            continue;
        }
        current.push_str(line);
        let (op, rest) = current.split_once(' ').unwrap_or((current.as_str(), ""));
        out.push((op.to_uppercase(), rest.trim().to_string()));
        current.clear();
    }
    out
}

#[test]
fn dockerfile_builds_both_binaries_and_runs_them_as_non_root() {
    let ins = instructions();
    let froms: Vec<&String> = ins
        .iter()
        .filter(|(op, _)| op == "FROM")
        .map(|(_, r)| r)
        .collect();
    assert!(froms.len() >= 2, "multi-stage: {froms:?}");
    for from in &froms {
        let image = from.split_whitespace().next().unwrap();
        let first = image.split('/').next().unwrap();
        assert!(
            !(image.contains('/') && (first.contains('.') || first.contains(':'))),
            "base image {image} names a registry host"
        );
    }
    assert!(froms[0].ends_with("AS builder"), "{froms:?}");

    let runs: String = ins
        .iter()
        .filter(|(op, _)| op == "RUN")
        .map(|(_, r)| r.as_str())
        .collect::<Vec<_>>()
        .join("\n");
    for tool in ["cmake", "g++", "make", "perl", "zlib1g-dev"] {
        assert!(
            runs.contains(&format!(" {tool} ")),
            "the builder lacks {tool}"
        );
    }
    assert!(runs.contains("cargo build --release --locked"), "{runs}");
    // The package and binary names the build uses are the workspace's.
    for (package, bin, manifest) in [
        ("spillway-worker", "spillway", "worker/Cargo.toml"),
        (
            "spillway-operator",
            "spillway-operator",
            "operator/Cargo.toml",
        ),
    ] {
        assert!(
            runs.contains(&format!("-p {package} --bin {bin}")),
            "{package}/{bin} not built"
        );
        let cargo = read(manifest);
        assert!(
            cargo.contains(&format!("name = \"{package}\"")),
            "{manifest}"
        );
        assert!(
            cargo.contains(&format!("[[bin]]\nname = \"{bin}\"")),
            "{manifest} has no binary {bin}"
        );
        assert!(
            runs.contains(&format!("target/release/{bin} /out/{bin}")),
            "{bin} not kept"
        );
    }

    // The runtime stage: the last FROM onwards.
    let last_from = ins.iter().rposition(|(op, _)| op == "FROM").unwrap();
    let runtime = &ins[last_from..];
    let get = |op: &str| -> Vec<&str> {
        runtime
            .iter()
            .filter(|(o, _)| o == op)
            .map(|(_, r)| r.as_str())
            .collect()
    };
    let copy = get("COPY").join("\n");
    assert!(
        copy.contains("--from=builder /out/spillway /out/spillway-operator /usr/local/bin/"),
        "{copy}"
    );
    let user = get("USER");
    assert_eq!(user.len(), 1, "{user:?}");
    let uid: u32 = user[0]
        .split(':')
        .next()
        .unwrap()
        .parse()
        .expect("a numeric user");
    assert_ne!(uid, 0, "runs as root");
    assert_eq!(get("ENTRYPOINT"), [r#"["spillway"]"#]);
    assert_eq!(get("EXPOSE"), ["8080"]);

    // The chart's command is a binary of the image; its default image has no registry host.
    let deployment = read("charts/spillway/templates/deployment.yaml");
    assert!(deployment.contains(r#"command: ["spillway-operator"]"#));
    let values = read("charts/spillway/values.yaml");
    assert!(values.contains("repository: spillway-dev/spillway\n"));
}

#[test]
fn the_build_context_leaves_out_the_target_directory_and_git() {
    let ignore = read(".dockerignore");
    for entry in ["target/", ".git/"] {
        assert!(ignore.lines().any(|l| l == entry), "{entry}");
    }
}
