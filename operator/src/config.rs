//! Pure: the `run` command's settings — flags with environment fallbacks — and the
//! reconcile settings derived from them.

use std::net::SocketAddr;
use std::time::Duration;

/// `spillway-operator run` flags.
#[derive(Clone, Debug, clap::Args)]
pub struct RunArgs {
    /// Namespaces to watch, comma-separated or repeated; every namespace when omitted.
    #[arg(
        long = "namespace",
        env = "SPILLWAY_WATCH_NAMESPACES",
        value_delimiter = ','
    )]
    pub namespaces: Vec<String>,
    /// Address of the operator's `/metrics`, `/healthz` and `/readyz`.
    #[arg(
        long,
        env = "SPILLWAY_HTTP_ADDR",
        default_value = "0.0.0.0:8080",
        value_parser = parse_http_addr
    )]
    pub http_addr: SocketAddr,
    /// Elect one leader among the operator's replicas on a Lease; disable only when a
    /// single replica runs.
    #[arg(long, env = "SPILLWAY_LEADER_ELECTION", default_value_t = true, action = clap::ArgAction::Set)]
    pub leader_election: bool,
    /// Name of the leader Lease.
    #[arg(long, env = "SPILLWAY_LEASE_NAME", default_value = "spillway-operator")]
    pub lease_name: String,
    /// Namespace of the leader Lease. Default: the operator's own (from the service
    /// account), else the client's default namespace.
    #[arg(long, env = "POD_NAMESPACE")]
    pub lease_namespace: Option<String>,
    /// This replica's identity in the Lease. Default: `$HOSTNAME` (the pod name).
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
    /// How long an unrenewed lease stays with its holder (Go duration).
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    pub lease_duration: Duration,
    /// How often a running pipeline's workers are asked for `/progress` (Go duration).
    #[arg(long, env = "SPILLWAY_PROGRESS_INTERVAL", default_value = "30s", value_parser = parse_duration)]
    pub progress_interval: Duration,
    /// How long one worker may take to answer `/progress` (Go duration).
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub progress_timeout: Duration,
    /// Log format.
    #[arg(long, env = "SPILLWAY_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Give each pipeline's workers a NetworkPolicy: ingress only to their HTTP port, only
    /// from the operator's pods and from the `--scrape-namespace` namespaces (Prometheus).
    #[arg(long, env = "SPILLWAY_WORKER_NETWORK_POLICY", default_value_t = true, action = clap::ArgAction::Set)]
    pub worker_network_policy: bool,
    /// Namespaces whose pods may scrape the workers' `/metrics`, comma-separated or repeated.
    #[arg(
        long = "scrape-namespace",
        env = "SPILLWAY_SCRAPE_NAMESPACES",
        value_delimiter = ',',
        default_value = "monitoring"
    )]
    pub scrape_namespaces: Vec<String>,
}

/// Who may reach the workers' HTTP port (the workers' NetworkPolicy).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkerNetworkPolicy {
    /// The operator's namespace; `None` (the operator runs outside the cluster): operator
    /// pods of any namespace.
    pub operator_namespace: Option<String>,
    /// Namespaces whose pods may scrape `/metrics`.
    pub scrape_namespaces: Vec<String>,
}

/// Log output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    spillway_api::validate::parse_duration(s)
        .filter(|d| !d.is_zero())
        .ok_or_else(|| format!("invalid duration {s:?}: use a Go duration such as 15s or 1m"))
}

/// What a reconciliation needs to know beyond the pipeline.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Requeue interval of a running pipeline (progress polling).
    pub progress_interval: Duration,
    /// Timeout of one worker's `/progress` answer.
    pub progress_timeout: Duration,
    /// First retry delay after a failed reconciliation; doubles per failure.
    pub retry_base: Duration,
    /// Longest retry delay.
    pub retry_max: Duration,
    /// The workers' NetworkPolicy; `None`: none is applied (and a stale one is removed).
    pub worker_network_policy: Option<WorkerNetworkPolicy>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            progress_interval: Duration::from_secs(30),
            progress_timeout: Duration::from_secs(2),
            retry_base: Duration::from_secs(5),
            retry_max: Duration::from_secs(300),
            worker_network_policy: None,
        }
    }
}

impl From<&RunArgs> for Settings {
    fn from(a: &RunArgs) -> Self {
        Self {
            progress_interval: a.progress_interval,
            progress_timeout: a.progress_timeout,
            worker_network_policy: a.worker_network_policy.then(|| WorkerNetworkPolicy {
                operator_namespace: a.lease_namespace.clone(),
                scrape_namespaces: a.scrape_namespaces.clone(),
            }),
            ..Self::default()
        }
    }
}

/// `HOST:PORT`, also with a bare IPv6 host (`$(POD_IP):8080` on an IPv6 cluster).
fn parse_http_addr(s: &str) -> Result<SocketAddr, String> {
    spillway_api::validate::parse_socket_addr(s)
        .ok_or_else(|| format!("invalid address {s:?}: use HOST:PORT, e.g. 0.0.0.0:8080"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        run: RunArgs,
    }

    #[test]
    fn flags_and_defaults() {
        let cli = Cli::try_parse_from(["x", "--namespace", "a,b", "--namespace", "c"]).unwrap();
        assert_eq!(cli.run.namespaces, ["a", "b", "c"]);
        assert!(cli.run.leader_election);
        assert_eq!(cli.run.lease_duration, Duration::from_secs(15));
        let cli = Cli::try_parse_from([
            "x",
            "--leader-election",
            "false",
            "--progress-interval",
            "1m",
        ])
        .unwrap();
        assert!(!cli.run.leader_election);
        assert_eq!(
            Settings::from(&cli.run).progress_interval,
            Duration::from_secs(60)
        );
        assert!(Cli::try_parse_from(["x", "--lease-duration", "0s"]).is_err());
    }
}
