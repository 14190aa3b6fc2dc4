//! The Spillway operator: reconciles `StreamingPipeline`s into worker Deployments and
//! reports their progress in the resource's status.
//!
//! # Layout
//! - [`config`]: pure: the `run` command's flags and the reconcile settings.
//! - [`controller`]: I/O: wires the HTTP server, leader election, the controllers (one per
//!   watched namespace) and graceful shutdown together.
//! - [`context`]: what every reconciliation shares: client, Event recorder, progress client,
//!   metrics, retry counts.
//! - [`reconcile`]: the reconcile function, running the stages below in order, and the
//!   error policy.
//! - [`dereference`]: I/O: reads the worker Deployment, the ready pods and their `/progress`.
//! - [`validate`]: pure: `spillway validate`'s checks plus the in-cluster ones → [`validate::ValidPipeline`].
//! - [`build`]: pure: the children — ConfigMap, Deployment, Service, PodDisruptionBudget.
//! - [`apply`]: I/O: server-side apply of the children and removal of orphans.
//! - [`merge`]: pure: merges the workers' reports (`spillway_api::report`) into one
//!   progress, lag and conditions.
//! - [`status`]: pure: phase, conditions, progress, lag and last error.
//! - [`events`]: which Events to publish (pure) and a best-effort publisher.
//! - [`leader`]: I/O: leader election on a `coordination.k8s.io` Lease.
//! - [`metrics`]: the operator's Prometheus metrics.
//! - [`http`]: I/O: `/metrics`, `/healthz`, `/readyz`.

pub mod apply;
pub mod build;
pub mod config;
pub mod context;
pub mod controller;
pub mod dereference;
pub mod events;
pub mod http;
pub mod leader;
pub mod merge;
pub mod metrics;
pub mod reconcile;
pub mod status;
pub mod validate;
