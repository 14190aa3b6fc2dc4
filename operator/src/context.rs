//! What every reconciliation shares: the client, the Event recorder, the HTTP client for
//! worker `/progress`, metrics, settings and per-pipeline retry counts.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kube::Client;
use kube::runtime::events::{Recorder, Reporter};

use crate::build::MANAGER;
use crate::config::Settings;
use crate::metrics::Metrics;

/// The reconcile context.
#[derive(Clone)]
pub struct Context {
    /// The Kubernetes client.
    pub client: Client,
    /// Publishes Events as `spillway-operator`.
    pub recorder: Recorder,
    /// Asks workers for `/progress` (no proxy: pod IPs are reached directly).
    pub http: reqwest::Client,
    /// The operator's metrics.
    pub metrics: Arc<Metrics>,
    /// Intervals and timeouts.
    pub settings: Settings,
    failures: Arc<Mutex<HashMap<String, u32>>>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl Context {
    /// A context; `instance` names this replica in Events.
    pub fn new(
        client: Client,
        metrics: Arc<Metrics>,
        settings: Settings,
        instance: Option<String>,
    ) -> Self {
        let reporter = Reporter {
            controller: MANAGER.into(),
            instance,
        };
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            // Pod IPs are reached directly (no proxy) and a worker's answer is read as is:
            // a redirect elsewhere is not followed.
            http: reqwest::Client::builder()
                .no_proxy()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap_or_default(),
            metrics,
            settings,
            failures: Arc::default(),
        }
    }

    /// Counts a failure of pipeline `key` and returns the delay before its retry:
    /// `retry_base` doubled per consecutive failure, at most `retry_max`.
    pub fn retry_after(&self, key: &str) -> Duration {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let n = failures.entry(key.to_string()).or_insert(0);
        let delay = self
            .settings
            .retry_base
            .saturating_mul(1u32.checked_shl(*n).unwrap_or(u32::MAX))
            .min(self.settings.retry_max);
        *n = n.saturating_add(1);
        delay
    }

    /// Forgets the failures of pipeline `key`.
    pub fn succeeded(&self, key: &str) {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        failures.remove(key);
    }
}
