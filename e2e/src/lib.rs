//! Test support for the black-box suite: where the test services are and unique names.
//!
//! # Layout
//! - [`registry`]: an in-process Confluent Schema Registry fixture with fault injection.
//! - [`kubelet`]: a kubelet stand-in that runs the pods of the cluster e2e as local
//!   processes on loopback addresses.
//! - [`observability`]: the metric names the shipped dashboard and alerts use, checked
//!   against what a worker or the operator exports.
//! - this file: service endpoints (from the environment the scripts in `e2e/scripts` set up,
//!   with their loopback defaults), unique topic/prefix names, and a loopback HTTP helper.
//!
//! The services are started by `e2e/scripts/start-services.sh`; a test that needs one and
//! cannot reach it fails with a message saying so — it never passes silently.

pub mod kubelet;
pub mod observability;
pub mod registry;

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Errors of the test helpers.
#[derive(Debug, thiserror::Error)]
pub enum SupportError {
    /// A service is not reachable.
    #[error(
        "{service} is not reachable at {addr}: start the services with `bash e2e/scripts/start-services.sh` ({source})"
    )]
    Unreachable {
        /// Which service.
        service: &'static str,
        /// Its address.
        addr: String,
        /// The connection error.
        #[source]
        source: std::io::Error,
    },
    /// An HTTP exchange failed.
    #[error("http request to {addr} failed: {source}")]
    Http {
        /// The address.
        addr: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// An HTTP response could not be parsed.
    #[error("malformed http response from {0}")]
    Malformed(String),
}

/// Kafka bootstrap address of the test broker (Apache Kafka, `e2e/scripts/kafka.sh`).
pub fn kafka_bootstrap() -> String {
    std::env::var("SPILLWAY_KAFKA_BOOTSTRAP").unwrap_or_else(|_| "127.0.0.1:19092".into())
}

/// S3 endpoint URL of the moto server.
pub fn s3_endpoint() -> String {
    std::env::var("SPILLWAY_S3_ENDPOINT").unwrap_or_else(|_| "http://127.0.0.1:15000".into())
}

/// The bucket the start script creates for tests.
pub fn s3_bucket() -> String {
    std::env::var("SPILLWAY_S3_BUCKET").unwrap_or_else(|_| "spillway-test".into())
}

/// `host:port` of an `http://host:port` URL.
pub fn host_port(url: &str) -> String {
    url.trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string()
}

/// Fails with a clear message unless `addr` accepts TCP connections.
pub fn require(service: &'static str, addr: &str) -> Result<(), SupportError> {
    let unreachable = |source| SupportError::Unreachable {
        service,
        addr: addr.to_string(),
        source,
    };
    let sock = addr
        .to_socket_addrs()
        .map_err(unreachable)?
        .next()
        .ok_or_else(|| unreachable(std::io::Error::other("no address")))?;
    TcpStream::connect_timeout(&sock, Duration::from_secs(2))
        .map(|_| ())
        .map_err(unreachable)
}

/// A name unique to this process and call: `<prefix>-<pid>-<millis>-<n>`.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let millis = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    format!(
        "{prefix}-{}-{millis}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Sends one HTTP/1.1 request on loopback and returns the status code (for checks of a
/// server's raw protocol behaviour, such as a conditional put's 412).
pub fn http_status(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<u16, SupportError> {
    let io = |source| SupportError::Http {
        addr: addr.to_string(),
        source,
    };
    let mut s = TcpStream::connect(addr).map_err(io)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(io)?;
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).map_err(io)?;
    s.write_all(body).map_err(io)?;
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).map_err(io)?;
    let text = String::from_utf8_lossy(&resp);
    text.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| SupportError::Malformed(addr.to_string()))
}

/// The Python with the independent readers (`deltalake`, `pyarrow`): `SPILLWAY_PYTHON`, else
/// the venv the install script makes, else `python3`.
pub fn python() -> String {
    if let Ok(p) = std::env::var("SPILLWAY_PYTHON") {
        return p;
    }
    let cache = std::env::var("SPILLWAY_CACHE")
        .map(std::path::PathBuf::from)
        .or_else(|_| {
            std::env::var("HOME").map(|h| std::path::Path::new(&h).join(".cache/spillway"))
        });
    if let Ok(cache) = cache {
        let venv = cache.join("tools/venv/bin/python3");
        if venv.exists() {
            return venv.display().to_string();
        }
    }
    "python3".into()
}

/// A loopback port free at the time of the call.
pub fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}
