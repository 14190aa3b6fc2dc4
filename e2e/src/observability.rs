//! Pure: the metric names the shipped Grafana dashboard and Prometheus rules use, and which of
//! them an OpenMetrics exposition fails to serve.
//!
//! A name a query uses is served when it is a sample name of the exposition, or when the
//! exposition declares its family (`# TYPE <family> <type>`) and the name is that family plus
//! a suffix its type has (`_total` for a counter; `_bucket`, `_sum`, `_count` for a
//! histogram; none for a gauge). A labelled family with no series yet (say, dead letters in
//! a run without bad records) only has its `# TYPE` line, and still counts as exported.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The dashboard, relative to the repository root.
pub const DASHBOARD: &str = "config/grafana/spillway-pipelines.json";
/// The alerting rules, relative to the repository root.
pub const RULES: &str = "config/prometheus/spillway-rules.yaml";
/// The prefix of every Spillway metric.
pub const PREFIX: &str = "spillway_";
/// The prefix of the operator's metrics.
pub const OPERATOR_PREFIX: &str = "spillway_operator_";

/// Errors reading the dashboard or the rules.
#[derive(Debug, thiserror::Error)]
pub enum ObservabilityError {
    /// A file could not be read.
    #[error("failed to read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The dashboard is not JSON.
    #[error("{path} is not valid JSON: {source}")]
    Json {
        /// The file.
        path: PathBuf,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
    /// The rules are not YAML.
    #[error("{path} is not valid YAML: {source}")]
    Yaml {
        /// The file.
        path: PathBuf,
        /// The parse error.
        #[source]
        source: serde_yaml::Error,
    },
}

/// The repository root (the parent of the `e2e` crate).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn read(path: &Path) -> Result<String, ObservabilityError> {
    std::fs::read_to_string(path).map_err(|source| ObservabilityError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// Every `spillway_*` metric name used in a string of the dashboard or of the rules
/// (queries, variables, expressions).
pub fn referenced_metrics(root: &Path) -> Result<BTreeSet<String>, ObservabilityError> {
    let mut names = BTreeSet::new();
    let path = root.join(DASHBOARD);
    let dashboard: serde_json::Value =
        serde_json::from_str(&read(&path)?).map_err(|source| ObservabilityError::Json {
            path: path.clone(),
            source,
        })?;
    json_strings(&dashboard, &mut |s| names.extend(metric_names(s)));
    let path = root.join(RULES);
    let rules: serde_yaml::Value =
        serde_yaml::from_str(&read(&path)?).map_err(|source| ObservabilityError::Yaml {
            path: path.clone(),
            source,
        })?;
    yaml_strings(&rules, &mut |s| names.extend(metric_names(s)));
    Ok(names)
}

fn json_strings(v: &serde_json::Value, f: &mut dyn FnMut(&str)) {
    match v {
        serde_json::Value::String(s) => f(s),
        serde_json::Value::Array(a) => a.iter().for_each(|x| json_strings(x, f)),
        serde_json::Value::Object(o) => o.values().for_each(|x| json_strings(x, f)),
        _ => {}
    }
}

fn yaml_strings(v: &serde_yaml::Value, f: &mut dyn FnMut(&str)) {
    match v {
        serde_yaml::Value::String(s) => f(s),
        serde_yaml::Value::Sequence(a) => a.iter().for_each(|x| yaml_strings(x, f)),
        serde_yaml::Value::Mapping(m) => m.values().for_each(|x| yaml_strings(x, f)),
        _ => {}
    }
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == ':'
}

/// The `spillway_*` metric names in a PromQL expression (or any text).
pub fn metric_names(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    let mut offset = 0;
    while let Some(i) = rest.find(PREFIX) {
        let at = offset + i;
        let preceded = text[..at].chars().next_back().is_some_and(is_name_char);
        let name: String = text[at..]
            .chars()
            .take_while(|c| is_name_char(*c))
            .collect();
        if !preceded {
            out.insert(name.clone());
        }
        offset = at + name.len().max(PREFIX.len());
        rest = &text[offset..];
    }
    out
}

/// What an exposition serves: sample names, and each declared family's type.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Exposition {
    /// Names of the samples.
    pub samples: BTreeSet<String>,
    /// Family name → type (`counter`, `gauge`, `histogram`, …).
    pub families: BTreeMap<String, String>,
}

impl Exposition {
    /// Parses Prometheus text or OpenMetrics.
    pub fn parse(text: &str) -> Self {
        let mut e = Self::default();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let mut parts = rest.split_whitespace();
                if let (Some(name), Some(kind)) = (parts.next(), parts.next()) {
                    e.families.insert(name.into(), kind.into());
                }
            } else if !line.starts_with('#') && !line.trim().is_empty() {
                let name: String = line.chars().take_while(|c| is_name_char(*c)).collect();
                e.samples.insert(name);
            }
        }
        e
    }

    /// Whether a query can select `name` from this exposition.
    pub fn serves(&self, name: &str) -> bool {
        if self.samples.contains(name) {
            return true;
        }
        self.families.iter().any(|(family, kind)| {
            let suffixes: &[&str] = match kind.as_str() {
                "counter" => &["_total"],
                "histogram" | "gaugehistogram" => &["_bucket", "_sum", "_count"],
                "summary" => &["_sum", "_count", ""],
                "info" => &["_info"],
                _ => &[""],
            };
            name.strip_prefix(family.as_str())
                .is_some_and(|suffix| suffixes.contains(&suffix))
        })
    }

    /// Whether `name` has samples (not only a `# TYPE` line).
    pub fn has_samples(&self, name: &str) -> bool {
        self.samples.contains(name)
    }

    /// The names of `wanted` this exposition does not serve.
    pub fn missing<'a>(&self, wanted: impl IntoIterator<Item = &'a String>) -> Vec<String> {
        wanted
            .into_iter()
            .filter(|n| !self.serves(n))
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_names_in_queries() {
        let names = metric_names(
            r#"histogram_quantile(0.95, sum by (le) (rate(spillway_batch_stage_duration_seconds_bucket{pipeline=~"$p"}[5m]))) / x_spillway_not + spillway_lag_records"#,
        );
        assert_eq!(
            names.into_iter().collect::<Vec<_>>(),
            [
                "spillway_batch_stage_duration_seconds_bucket",
                "spillway_lag_records"
            ]
        );
    }

    #[test]
    fn suffixes_follow_the_family_type() {
        let e = Exposition::parse(
            "# TYPE spillway_input_records counter\n\
             spillway_input_records_total{pipeline=\"a\"} 3\n\
             # TYPE spillway_dead_letters counter\n\
             # TYPE spillway_batch_duration_seconds histogram\n\
             spillway_batch_duration_seconds_bucket{le=\"1\"} 1\n\
             # TYPE spillway_lag_records gauge\n\
             # EOF\n",
        );
        for ok in [
            "spillway_input_records_total",
            "spillway_dead_letters_total",
            "spillway_batch_duration_seconds_bucket",
            "spillway_batch_duration_seconds_count",
            "spillway_lag_records",
        ] {
            assert!(e.serves(ok), "{ok}");
        }
        for bad in [
            "spillway_input_records",
            "spillway_dead_letters",
            "spillway_batch_duration_seconds",
            "spillway_lag_records_total",
            "spillway_missing",
        ] {
            assert!(!e.serves(bad), "{bad}");
        }
        assert!(!e.has_samples("spillway_dead_letters_total"));
    }
}
