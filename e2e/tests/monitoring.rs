//! The shipped alerts and dashboard: `promtool check rules` and `promtool test rules` pass,
//! every alert has a unit test, the alerts the issue names exist, every dashboard query is
//! valid PromQL (checked by promtool as recording rules), and the dashboard has the
//! variables and panels operators look for. Whether the metrics they use are exported is
//! checked against a running worker (worker/tests/observability_contract.rs) and the
//! operator's registry (operator/tests/observability_contract.rs).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;

use serde_json::Value as Json;
use serde_yaml::Value as Yaml;
use spillway_e2e::observability::{DASHBOARD, PREFIX, RULES, metric_names};

const RULES_TEST: &str = "config/prometheus/spillway-rules.test.yaml";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn promtool(args: &[&str]) -> String {
    let out = Command::new("promtool")
        .args(args)
        .current_dir(root())
        .output()
        .unwrap_or_else(|e| {
            panic!("promtool not runnable ({e}): run `bash e2e/scripts/install-services.sh`")
        });
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool {args:?} failed:\n{text}");
    text
}

fn yaml(path: &str) -> Yaml {
    serde_yaml::from_str(&std::fs::read_to_string(root().join(path)).unwrap()).unwrap()
}

fn dashboard() -> Json {
    serde_json::from_str(&std::fs::read_to_string(root().join(DASHBOARD)).unwrap()).unwrap()
}

fn alerts() -> Vec<Yaml> {
    yaml(RULES)["groups"]
        .as_sequence()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_sequence().unwrap().clone())
        .filter(|r| r["alert"].is_string())
        .collect()
}

#[test]
fn promtool_checks_the_rules_and_the_charts_copy() {
    let out = promtool(&[
        "check",
        "rules",
        RULES,
        "charts/spillway/files/spillway-rules.yaml",
    ]);
    assert!(out.contains("SUCCESS"), "{out}");
}

#[test]
fn promtool_unit_tests_pass_and_cover_every_alert() {
    let out = promtool(&["test", "rules", RULES_TEST]);
    assert!(out.contains("SUCCESS"), "{out}");

    let tests = yaml(RULES_TEST);
    let mut firing = BTreeSet::new();
    let mut quiet = BTreeSet::new();
    for t in tests["tests"].as_sequence().unwrap() {
        for case in t["alert_rule_test"].as_sequence().into_iter().flatten() {
            let name = case["alertname"].as_str().unwrap().to_string();
            if case["exp_alerts"]
                .as_sequence()
                .is_some_and(|a| !a.is_empty())
            {
                firing.insert(name);
            } else {
                quiet.insert(name);
            }
        }
    }
    for alert in alerts() {
        let name = alert["alert"].as_str().unwrap();
        assert!(firing.contains(name), "no test where {name} fires");
        assert!(quiet.contains(name), "no test where {name} stays quiet");
    }
}

#[test]
fn the_issues_alerts_exist_with_severity_and_a_summary() {
    let alerts = alerts();
    let names: BTreeSet<&str> = alerts
        .iter()
        .map(|a| a["alert"].as_str().unwrap())
        .collect();
    for wanted in [
        "SpillwayLagGrowing",
        "SpillwayProcessingSlowerThanInput",
        "SpillwayNoCommittedBatch",
        "SpillwayDeadLetters",
        "SpillwayPipelineDegraded",
        "SpillwayPipelineFailed",
        "SpillwayDataLoss",
    ] {
        assert!(names.contains(wanted), "missing alert {wanted}");
    }
    for a in &alerts {
        let name = a["alert"].as_str().unwrap();
        let severity = a["labels"]["severity"].as_str().unwrap_or_default();
        assert!(
            ["warning", "critical"].contains(&severity),
            "{name}: severity {severity:?}"
        );
        for key in ["summary", "description"] {
            assert!(a["annotations"][key].is_string(), "{name}: no {key}");
        }
        let expr = a["expr"].as_str().unwrap();
        assert!(
            expr.contains("by (namespace, pipeline"),
            "{name}: alerts are per pipeline: {expr}"
        );
    }
    let lag = alerts
        .iter()
        .find(|a| a["alert"] == "SpillwayLagGrowing")
        .unwrap();
    assert_eq!(lag["for"], "10m");
    let slow = alerts
        .iter()
        .find(|a| a["alert"] == "SpillwayProcessingSlowerThanInput")
        .unwrap();
    assert_eq!(slow["for"], "15m");
}

fn targets(d: &Json) -> Vec<(String, Json)> {
    let mut out = vec![];
    for p in d["panels"].as_array().unwrap() {
        let title = p["title"].as_str().unwrap().to_string();
        for t in p["targets"].as_array().into_iter().flatten() {
            out.push((title.clone(), t.clone()));
        }
        for inner in p["panels"].as_array().into_iter().flatten() {
            for t in inner["targets"].as_array().into_iter().flatten() {
                out.push((inner["title"].as_str().unwrap().to_string(), t.clone()));
            }
        }
    }
    out
}

#[test]
fn every_dashboard_query_is_valid_promql() {
    // Grafana's variables replaced by values, each query a recording rule: promtool parses
    // every expression and rejects unknown functions.
    let d = dashboard();
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    let mut n = 0;
    for (title, t) in targets(&d) {
        let expr = t["expr"]
            .as_str()
            .unwrap_or_else(|| panic!("{title}: no expr"));
        let expr = expr
            .replace("$__rate_interval", "5m")
            .replace("$__range", "1h")
            .replace("$namespace", ".*")
            .replace("$pipeline", ".*");
        assert!(!expr.contains('$'), "{title}: unknown variable in {expr}");
        rules.push_str(&format!(
            "      - record: dashboard:query_{n}\n        expr: {}\n",
            serde_json::to_string(&expr).unwrap()
        ));
        n += 1;
    }
    assert!(n >= 10, "{n} queries");
    let path = std::env::temp_dir().join(format!(
        "{}.yaml",
        spillway_e2e::unique("spillway-dashboard-rules")
    ));
    std::fs::write(&path, rules).unwrap();
    let out = promtool(&["check", "rules", path.to_str().unwrap()]);
    assert!(out.contains(&format!("SUCCESS: {n} rules found")), "{out}");
    let _ = std::fs::remove_file(&path);
}

#[test]
fn the_dashboard_has_the_variables_and_panels_of_the_issue() {
    let d = dashboard();
    assert_eq!(d["uid"], "spillway-pipelines");
    let vars: Vec<&Json> = d["templating"]["list"].as_array().unwrap().iter().collect();
    let var = |name: &str| {
        *vars
            .iter()
            .find(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("no variable {name}"))
    };
    assert_eq!(var("datasource")["type"], "datasource");
    assert_eq!(var("datasource")["query"], "prometheus");
    for name in ["namespace", "pipeline"] {
        let v = var(name);
        assert_eq!(v["type"], "query", "{name}");
        assert_eq!(v["multi"], true, "{name}");
        assert_eq!(v["includeAll"], true, "{name}");
        assert!(
            v["definition"]
                .as_str()
                .unwrap()
                .starts_with("label_values("),
            "{name}"
        );
    }
    assert!(
        var("pipeline")["definition"]
            .as_str()
            .unwrap()
            .contains("$namespace"),
        "pipeline depends on namespace"
    );

    let titles: BTreeSet<&str> = d["panels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["title"].as_str().unwrap())
        .collect();
    for wanted in [
        "Input vs processed rows/s",
        "Lag per partition",
        "Batch duration by stage (p95)",
        "Freshness",
        "Dead letters and bad records by reason",
        "Commits and table version",
        "Errors and restarts",
    ] {
        assert!(titles.contains(wanted), "no panel {wanted:?}: {titles:?}");
    }
    let uses = |title: &str, metric: &str| {
        targets(&d)
            .iter()
            .filter(|(t, _)| t == title)
            .any(|(_, q)| metric_names(q["expr"].as_str().unwrap()).contains(metric))
    };
    for (title, metric) in [
        ("Input vs processed rows/s", "spillway_input_records_total"),
        ("Input vs processed rows/s", "spillway_output_rows_total"),
        ("Lag per partition", "spillway_lag_records"),
        (
            "Batch duration by stage (p95)",
            "spillway_batch_stage_duration_seconds_bucket",
        ),
        ("Freshness", "spillway_event_time_max_seconds"),
        ("Freshness", "spillway_watermark_seconds"),
        (
            "Dead letters and bad records by reason",
            "spillway_dead_letters_total",
        ),
        ("Commits and table version", "spillway_batches_total"),
        ("Commits and table version", "spillway_table_version"),
        ("Errors and restarts", "spillway_worker_start_time_seconds"),
    ] {
        assert!(uses(title, metric), "{title:?} should query {metric}");
    }

    // Every query goes to the chosen data source and, for worker metrics, honours the
    // namespace and pipeline variables.
    for (title, t) in targets(&d) {
        assert_eq!(t["datasource"]["uid"], "${datasource}", "{title}");
        let expr = t["expr"].as_str().unwrap();
        let worker_metric = metric_names(expr)
            .iter()
            .any(|m| m.starts_with(PREFIX) && !m.starts_with("spillway_operator_"));
        if worker_metric {
            assert!(
                expr.contains(r#"namespace=~"$namespace""#)
                    && expr.contains(r#"pipeline=~"$pipeline""#),
                "{title}: {expr}"
            );
        }
    }
    // Panels do not overlap rows and stay within the 24-column grid.
    for p in d["panels"].as_array().unwrap() {
        let g = &p["gridPos"];
        let (x, w) = (g["x"].as_u64().unwrap(), g["w"].as_u64().unwrap());
        assert!(x + w <= 24, "{}: outside the grid", p["title"]);
    }
}
