//! What a running worker serves: its `/progress` document, its Prometheus metrics, and the
//! HTTP server (`/progress`, `/metrics`, `/healthz`, `/readyz`) that answers with them.

pub mod http;
pub mod metrics;
pub mod progress;
