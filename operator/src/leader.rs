//! I/O: leader election on a `coordination.k8s.io/v1` Lease, so that of several operator
//! replicas exactly one reconciles.
//!
//! The protocol is client-go's: the leader renews the Lease every `retry_period`; another
//! candidate takes it over only after seeing the Lease unchanged for `leaseDurationSeconds`
//! (measured on its own clock, so clock skew between nodes does not matter). Every write
//! carries the `resourceVersion` it read, so two candidates cannot both win a round: the
//! loser gets 409 Conflict. A leader that cannot renew within two thirds of the duration
//! steps down before anyone may take over.

use std::future::Future;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::PostParams;
use kube::{Api, Client};
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{info, warn};

/// Why a lease round failed.
#[derive(Debug, thiserror::Error, strum::IntoStaticStr)]
pub enum Error {
    /// The Lease could not be read or written.
    #[error("lease {namespace}/{name}: {source}")]
    LeaseFailed {
        /// Lease namespace.
        namespace: String,
        /// Lease name.
        name: String,
        /// The client error.
        #[source]
        source: kube::Error,
    },
}

/// Where the lease is and who this replica is.
#[derive(Clone, Debug)]
pub struct LeaseConfig {
    /// Namespace of the Lease (the operator's own).
    pub namespace: String,
    /// Name of the Lease.
    pub name: String,
    /// This replica's identity (its pod name); unique among candidates.
    pub identity: String,
    /// How long a lease not renewed stays with its holder.
    pub lease_duration: Duration,
    /// How often the leader renews and candidates retry.
    pub retry_period: Duration,
}

impl LeaseConfig {
    /// The leader steps down when it could not renew for this long.
    pub fn renew_deadline(&self) -> Duration {
        self.lease_duration * 2 / 3
    }
}

/// What one round does with the Lease it read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// No Lease yet: create it, held by us.
    Create,
    /// Free or expired: take it over.
    Acquire,
    /// Ours: renew it.
    Renew,
    /// Held by a live candidate: wait.
    Wait,
}

/// The last Lease record seen and when it was first seen, to judge expiry locally.
#[derive(Clone, Debug, Default)]
pub struct Observed {
    record: Option<String>,
    since: Option<Instant>,
}

/// Decides a round. A Lease held by another is expired once its record (its
/// `resourceVersion`) has stayed the same for its `leaseDurationSeconds` on our clock.
pub fn decide(
    lease: Option<&Lease>,
    identity: &str,
    observed: &mut Observed,
    now: Instant,
    default_duration: Duration,
) -> Decision {
    let Some(lease) = lease else {
        return Decision::Create;
    };
    let spec = lease.spec.as_ref();
    let holder = spec
        .and_then(|s| s.holder_identity.as_deref())
        .unwrap_or("");
    if holder == identity {
        return Decision::Renew;
    }
    if holder.is_empty() {
        return Decision::Acquire;
    }
    let record = lease.metadata.resource_version.clone().unwrap_or_default();
    let since = match (&observed.record, observed.since) {
        (Some(r), Some(since)) if *r == record => since,
        _ => {
            observed.record = Some(record);
            observed.since = Some(now);
            return Decision::Wait;
        }
    };
    let duration = spec
        .and_then(|s| s.lease_duration_seconds)
        .and_then(|s| u64::try_from(s).ok())
        .map_or(default_duration, Duration::from_secs);
    if now.duration_since(since) >= duration {
        Decision::Acquire
    } else {
        Decision::Wait
    }
}

/// One candidate.
#[derive(Debug)]
pub struct Elector {
    api: Api<Lease>,
    cfg: LeaseConfig,
    observed: Observed,
    leading: bool,
    last_renewal: Option<Instant>,
}

impl Elector {
    /// A candidate for the Lease of `cfg`.
    pub fn new(client: Client, cfg: LeaseConfig) -> Self {
        Self {
            api: Api::namespaced(client, &cfg.namespace),
            cfg,
            observed: Observed::default(),
            leading: false,
            last_renewal: None,
        }
    }

    /// Whether this candidate leads.
    pub fn is_leading(&self) -> bool {
        self.leading
    }

    /// One round: reads the Lease and creates, takes over or renews it as [`decide`]s.
    /// Returns whether this candidate leads afterwards. On an API error a leader keeps
    /// leading until its renew deadline has passed.
    pub async fn round(&mut self) -> Result<bool, Error> {
        match self.try_round().await {
            Ok(leading) => {
                self.leading = leading;
                if leading {
                    self.last_renewal = Some(Instant::now());
                }
                Ok(leading)
            }
            Err(e) => {
                let overdue = self
                    .last_renewal
                    .is_none_or(|t| t.elapsed() >= self.cfg.renew_deadline());
                if self.leading && overdue {
                    self.leading = false;
                }
                Err(e)
            }
        }
    }

    async fn try_round(&mut self) -> Result<bool, Error> {
        let current = self
            .api
            .get_opt(&self.cfg.name)
            .await
            .map_err(|e| self.err(e))?;
        let now = Timestamp::now();
        let decision = decide(
            current.as_ref(),
            &self.cfg.identity,
            &mut self.observed,
            Instant::now(),
            self.cfg.lease_duration,
        );
        let spec = current
            .as_ref()
            .and_then(|l| l.spec.clone())
            .unwrap_or_default();
        let lease = |spec: LeaseSpec| Lease {
            metadata: ObjectMeta {
                name: Some(self.cfg.name.clone()),
                namespace: Some(self.cfg.namespace.clone()),
                resource_version: current
                    .as_ref()
                    .and_then(|l| l.metadata.resource_version.clone()),
                ..Default::default()
            },
            spec: Some(spec),
        };
        let held = |acquired: Option<MicroTime>, transitions: i32| LeaseSpec {
            holder_identity: Some(self.cfg.identity.clone()),
            lease_duration_seconds: Some(
                i32::try_from(self.cfg.lease_duration.as_secs()).unwrap_or(i32::MAX),
            ),
            acquire_time: Some(acquired.unwrap_or(MicroTime(now))),
            renew_time: Some(MicroTime(now)),
            lease_transitions: Some(transitions),
            ..Default::default()
        };
        let transitions = spec.lease_transitions.unwrap_or(0);
        let write = match decision {
            Decision::Wait => return Ok(false),
            Decision::Create => {
                self.api
                    .create(&PostParams::default(), &lease(held(None, 0)))
                    .await
            }
            Decision::Acquire => {
                self.api
                    .replace(
                        &self.cfg.name,
                        &PostParams::default(),
                        &lease(held(None, transitions + 1)),
                    )
                    .await
            }
            Decision::Renew => {
                self.api
                    .replace(
                        &self.cfg.name,
                        &PostParams::default(),
                        &lease(held(spec.acquire_time.clone(), transitions)),
                    )
                    .await
            }
        };
        match write {
            Ok(_) => {
                if !self.leading {
                    info!(lease = %self.cfg.name, identity = %self.cfg.identity, "acquired leadership");
                }
                Ok(true)
            }
            // Another candidate wrote first: it wins this round.
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(e) => Err(self.err(e)),
        }
    }

    /// Gives the Lease up (if held) so another candidate takes over without waiting.
    pub async fn release(&mut self) -> Result<(), Error> {
        if !self.leading {
            return Ok(());
        }
        self.leading = false;
        let Some(mut lease) = self
            .api
            .get_opt(&self.cfg.name)
            .await
            .map_err(|e| self.err(e))?
        else {
            return Ok(());
        };
        let Some(spec) = lease.spec.as_mut() else {
            return Ok(());
        };
        if spec.holder_identity.as_deref() != Some(self.cfg.identity.as_str()) {
            return Ok(());
        }
        spec.holder_identity = None;
        spec.renew_time = Some(MicroTime(Timestamp::now()));
        match self
            .api
            .replace(&self.cfg.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => {
                info!(lease = %self.cfg.name, "released leadership");
                Ok(())
            }
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
            Err(e) => Err(self.err(e)),
        }
    }

    fn err(&self, source: kube::Error) -> Error {
        Error::LeaseFailed {
            namespace: self.cfg.namespace.clone(),
            name: self.cfg.name.clone(),
            source,
        }
    }

    /// Runs rounds every retry period, publishing leadership on `leading` and whether the
    /// last round reached the API server on `healthy`, until `stop` resolves; then releases.
    pub async fn run(
        mut self,
        leading: watch::Sender<bool>,
        healthy: watch::Sender<bool>,
        stop: impl Future<Output = ()>,
    ) {
        let mut stop = std::pin::pin!(stop);
        loop {
            let result = self.round().await;
            if let Err(e) = &result {
                warn!(error = %e, "lease round failed");
            }
            healthy.send_replace(result.is_ok());
            let now_leading = self.leading;
            leading.send_if_modified(|l| std::mem::replace(l, now_leading) != now_leading);
            tokio::select! {
                () = &mut stop => break,
                () = tokio::time::sleep(self.cfg.retry_period) => {}
            }
        }
        if let Err(e) = self.release().await {
            warn!(error = %e, "failed to release the lease");
        }
        leading.send_replace(false);
    }
}

#[cfg(test)]
#[path = "leader_tests.rs"]
mod tests;
