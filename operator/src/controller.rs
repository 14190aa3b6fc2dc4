//! I/O: runs the operator — the HTTP server, leader election, one controller per watched
//! namespace (or one over all), and graceful shutdown on SIGTERM or Ctrl-C.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use futures::future::{BoxFuture, FutureExt, Shared};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::runtime::controller::{self, Controller};
use kube::runtime::watcher;
use kube::{Api, Client};
use prometheus_client::registry::Registry;
use spillway_api::StreamingPipeline;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::build::{MANAGED_BY_LABEL, MANAGER};
use crate::config::{RunArgs, Settings};
use crate::context::Context;
use crate::http::{self, Health};
use crate::leader::{Elector, LeaseConfig};
use crate::metrics::Metrics;
use crate::reconcile::{error_policy, reconcile};

/// Why the operator stopped.
#[derive(Debug, thiserror::Error, strum::IntoStaticStr)]
pub enum Error {
    /// No Kubernetes client could be configured.
    #[error("failed to configure the kubernetes client: {0}")]
    ClientFailed(#[source] kube::Error),
    /// The signal handler could not be installed.
    #[error("failed to install the signal handler: {0}")]
    SignalFailed(#[source] std::io::Error),
    /// The HTTP server failed.
    #[error(transparent)]
    Http(#[from] http::Error),
    /// This replica lost the leader lease while reconciling.
    #[error("lost the leader lease: exiting so that a fresh replica campaigns")]
    LostLeadership,
}

/// How long in-flight reconciliations get to finish after a shutdown request (less than a
/// pod's default 30s termination grace period).
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(20);

/// A cloneable future that resolves once.
type Signal = Shared<BoxFuture<'static, ()>>;

fn when(mut rx: watch::Receiver<bool>, value: bool) -> Signal {
    async move {
        let _ = rx.wait_for(|v| *v == value).await;
    }
    .boxed()
    .shared()
}

/// Runs the operator until SIGTERM (Ok) or the loss of leadership (Err).
pub async fn run(args: RunArgs) -> Result<(), Error> {
    let client = Client::try_default().await.map_err(Error::ClientFailed)?;
    let mut registry = Registry::default();
    let metrics = Arc::new(Metrics::default().register(&mut registry));
    let health = Arc::new(Health::default());
    let identity = args
        .identity
        .clone()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| format!("{MANAGER}-{}", std::process::id()));

    let (stop_tx, stop_rx) = watch::channel(false);
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(Error::SignalFailed)?;
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        info!("shutdown requested");
        stop_tx.send_replace(true);
    });
    let stopping = when(stop_rx.clone(), true);

    let listener = http::bind(args.http_addr).await?;
    let app = http::router(Arc::new(registry), health.clone());
    let mut server = tokio::spawn(http::serve(listener, app, stopping.clone()));

    let (leading_tx, leading_rx) = watch::channel(!args.leader_election);
    let (release_tx, release_rx) = watch::channel(false);
    // Without leader election the sender stays here, so leadership is never "lost".
    let mut _always_leading = None;
    let elector = if args.leader_election {
        let namespace = args
            .lease_namespace
            .clone()
            .or_else(|| {
                std::fs::read_to_string("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
                    .ok()
                    .map(|s| s.trim().to_string())
            })
            .unwrap_or_else(|| client.default_namespace().to_string());
        let cfg = LeaseConfig {
            namespace,
            name: args.lease_name.clone(),
            identity: identity.clone(),
            lease_duration: args.lease_duration,
            retry_period: args.lease_duration / 3,
        };
        info!(lease = %cfg.name, namespace = %cfg.namespace, identity = %cfg.identity, "campaigning for leadership");
        let (healthy_tx, mut healthy_rx) = watch::channel(false);
        let h = health.clone();
        tokio::spawn(async move {
            while healthy_rx.changed().await.is_ok() {
                h.set_ready(*healthy_rx.borrow());
            }
        });
        let e = Elector::new(client.clone(), cfg);
        Some(tokio::spawn(e.run(
            leading_tx,
            healthy_tx,
            when(release_rx, true),
        )))
    } else {
        health.set_ready(true);
        _always_leading = Some(leading_tx);
        None
    };

    // Follow until elected or stopped; a failing HTTP server stops everything.
    tokio::select! {
        () = when(leading_rx.clone(), true) => {}
        () = stopping.clone() => {}
        r = &mut server => return server_result(r),
    }
    let mut lost = false;
    if !*stop_rx.borrow() {
        metrics.leader.set(1);
        let lost_lease = when(leading_rx.clone(), false);
        let shutdown: Signal = futures::future::select(stopping.clone(), lost_lease.clone())
            .map(|_| ())
            .boxed()
            .shared();
        let ctx = Arc::new(Context::new(
            client.clone(),
            metrics.clone(),
            Settings::from(&args),
            Some(identity),
        ));
        run_controllers(&client, &args.namespaces, ctx, shutdown).await;
        metrics.leader.set(0);
        lost = !*stop_rx.borrow() && args.leader_election;
    }
    release_tx.send_replace(true);
    if let Some(e) = elector {
        let _ = e.await;
    }
    if lost {
        return Err(Error::LostLeadership);
    }
    match tokio::time::timeout(std::time::Duration::from_secs(5), server).await {
        Ok(r) => server_result(r),
        Err(_) => Ok(()),
    }
}

fn server_result(r: Result<Result<(), http::Error>, tokio::task::JoinError>) -> Result<(), Error> {
    match r {
        Ok(Err(e)) => Err(e.into()),
        _ => Ok(()),
    }
}

/// Runs one controller per namespace (or one over all namespaces) until `shutdown`.
async fn run_controllers(
    client: &Client,
    namespaces: &[String],
    ctx: Arc<Context>,
    shutdown: Signal,
) {
    let scopes: Vec<Option<&str>> = if namespaces.is_empty() {
        vec![None]
    } else {
        namespaces.iter().map(|n| Some(n.as_str())).collect()
    };
    info!(namespaces = ?namespaces, "starting controllers");
    let runs = scopes.into_iter().map(|ns| {
        let pipelines: Api<StreamingPipeline> = match ns {
            Some(ns) => Api::namespaced(client.clone(), ns),
            None => Api::all(client.clone()),
        };
        let owned = watcher::Config::default().labels(&format!("{MANAGED_BY_LABEL}={MANAGER}"));
        let metrics = ctx.metrics.clone();
        Controller::new(pipelines, watcher::Config::default().any_semantic())
            .with_config(controller::Config::default().debounce(Duration::from_secs(1)))
            .owns(children::<ConfigMap>(client, ns), owned.clone())
            .owns(children::<Deployment>(client, ns), owned.clone())
            .owns(children::<Job>(client, ns), owned.clone())
            .owns(children::<Service>(client, ns), owned.clone())
            .owns(children::<PodDisruptionBudget>(client, ns), owned)
            .graceful_shutdown_on(shutdown.clone())
            .run(reconcile, error_policy, ctx.clone())
            .for_each(move |r| {
                match r {
                    Ok(_) => {}
                    Err(controller::Error::ObjectNotFound(o)) => {
                        metrics.forget(o.namespace.as_deref().unwrap_or_default(), &o.name);
                    }
                    Err(controller::Error::ReconcilerFailed(..)) => {}
                    Err(e) => warn!(error = %e, "controller error"),
                }
                futures::future::ready(())
            })
    });
    let stopped = futures::future::join_all(runs);
    // kube's controller drains only once its caches synced: without an API server it would
    // wait forever, so shutdown gets a deadline.
    let deadline = async {
        shutdown.clone().await;
        tokio::time::sleep(SHUTDOWN_GRACE).await;
    };
    tokio::select! {
        _ = stopped => info!("controllers stopped"),
        () = deadline => warn!(grace = ?SHUTDOWN_GRACE, "controllers did not stop in time: abandoning them"),
    }
}

fn children<K>(client: &Client, ns: Option<&str>) -> Api<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
{
    match ns {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}
