//! The Spillway worker: the engine behind the `spillway` CLI.
//!
//! # Layout
//! - [`cli`]: the `spillway` command line (arguments and one function per command).
//! - [`runner`]: I/O: `spillway run` / `demo` wiring: signals, HTTP server, metrics, summary.
//! - [`manifest`]: I/O: reads pipeline manifests from files and runs the full validation
//!   (the API crate's pure checks plus what needs the filesystem, such as schema files).
//! - [`engine`]: the micro-batch loop (source → decode → transform → sink → commit →
//!   progress): the manifest resolved once into a plan, an engine whose `select!` arms each
//!   call one method, the sink writing one batch on its own task while the next is read;
//!   with its transform, metadata columns and dead letters.
//! - [`source`]: I/O: the Kafka consumer-group source (config, positions, data loss).
//! - [`decode`]: the `spillway-decode` crate (`worker/decode`, no I/O, fuzzed on its own):
//!   Avro → Arrow schema resolution plan, the columnar decoder (one checked pass per
//!   record, rolled back on error), the JSON decoder of a row schema, the Protobuf decoder
//!   of a message type, the Confluent wire split, the decode benchmark.
//! - [`format`]: I/O: decodes Kafka values per `spec.format` (Avro raw or Confluent with the
//!   registry, several record types by `recordNames`; JSON plain or Confluent-framed;
//!   Protobuf raw or Confluent-framed) into Arrow rows of one schema; bad records come back
//!   classified.
//! - [`registry`]: I/O: the Confluent Schema Registry client (cache, auth, retries).
//! - [`sink`]: I/O: sinks; [`sink::delta`] commits batches with per-partition `txn` actions
//!   (merging through [`sink::upsert`] in `mode: merge`), [`sink::parquet`] with a
//!   write-ahead log.
//! - [`checkpoint`]: I/O: the checkpoint (query id, recent progress) on object storage.
//! - [`storage`]: pure: object-store options and URL normalisation.
//! - [`secrets`]: I/O: resolves secret references from the environment; never prints them.
//! - [`serve`]: what a running worker serves: [`serve::progress`] (Spark-style reports and
//!   the `/progress` document), [`serve::metrics`] (prometheus-client), [`serve::http`]
//!   (`/progress`, `/metrics`, `/healthz`, `/readyz`).
//! - [`tools`]: the subcommands beside `run`: [`tools::bench_pipeline`],
//!   [`tools::bench_merge`] and [`tools::bench_table`] (benchmarks), [`tools::generate`]
//!   (pure: deterministic HsuTestEvents and random values of any schema),
//!   [`tools::produce`] (the load generator), [`tools::maintain`] (optimize, vacuum),
//!   [`tools::compat`] (schema compatibility against a table).

pub mod checkpoint;
pub mod cli;
pub use spillway_decode as decode;
pub mod engine;
pub mod format;
pub mod manifest;
pub mod registry;
pub mod runner;
pub mod secrets;
pub mod serve;
pub mod sink;
pub mod source;
pub mod storage;
pub mod tools;
