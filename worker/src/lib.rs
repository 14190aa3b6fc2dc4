//! The Spillway worker: the engine behind the `spillway` CLI.
//!
//! # Layout
//! - [`cli`]: the `spillway` command line (arguments and one function per command).
//! - [`decode`]: the `spillway-decode` crate (`worker/decode`, no I/O, fuzzed on its own):
//!   Avro → Arrow schema resolution plan, the columnar decoder (one checked pass per
//!   record, rolled back on error), the Confluent wire split, the decode benchmark.
//! - [`secrets`]: I/O: resolves secret references from the environment; never prints them.
//! - [`source`]: I/O: the Kafka consumer-group source (config, positions, data loss).
//! - [`registry`]: I/O: the Confluent Schema Registry client (cache, auth, retries).
//! - [`format`]: I/O: decodes Kafka values per `spec.format.avro` (raw or Confluent with the
//!   registry) into Arrow rows of one reader schema; bad records come back classified.
//! - [`generate`]: pure: deterministic HsuTestEvents and random values of any schema.
//! - [`produce`]: I/O: the load generator behind `spillway produce`.
//! - [`engine`]: the micro-batch loop (source → decode → sink → commit → progress).
//! - [`sink`]: I/O: sinks; [`sink::delta`] commits batches with per-partition `txn` actions.
//! - [`checkpoint`]: I/O: the checkpoint (query id, recent progress) on object storage.
//! - [`progress`]: Spark-style progress reports and the `/progress` document.
//! - [`storage`]: pure: object-store options and URL normalisation.
//! - [`http`]: I/O: `/progress`, `/metrics`, `/healthz`, `/readyz`.
//! - [`metrics`]: the worker's prometheus-client metrics.
//! - [`runner`]: I/O: `spillway run` / `demo` wiring: signals, HTTP server, metrics, summary.
//! - [`manifest`]: I/O: reads pipeline manifests from files and runs the full validation
//!   (the API crate's pure checks plus what needs the filesystem, such as schema files).
//!
//! The data path (source → decode → transform → sink → commit) lands module by module.

pub mod bench_pipeline;
pub mod bench_table;
pub mod checkpoint;
pub mod cli;
pub mod compat;
pub use spillway_decode as decode;
pub mod engine;
pub mod format;
pub mod generate;
pub mod http;
pub mod maintain;
pub mod manifest;
pub mod metrics;
pub mod produce;
pub mod progress;
pub mod registry;
pub mod runner;
pub mod secrets;
pub mod sink;
pub mod source;
pub mod storage;
