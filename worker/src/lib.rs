//! The Spillway worker: the engine behind the `spillway` CLI.
//!
//! # Layout
//! - [`cli`]: the `spillway` command line (arguments and one function per command).
//! - [`decode`]: Avro → Arrow: schema resolution plan, the columnar decoder (one checked
//!   pass per record, rolled back on error), the Confluent wire split, the decode benchmark.
//! - [`secrets`]: I/O: resolves secret references from the environment; never prints them.
//! - [`source`]: I/O: the Kafka consumer-group source (config, positions, data loss).
//! - [`registry`]: I/O: the Confluent Schema Registry client (cache, auth, retries).
//! - [`format`]: I/O: decodes Kafka values per `spec.format.avro` (raw or Confluent with the
//!   registry) into Arrow rows of one reader schema; bad records come back classified.
//! - [`generate`]: pure: deterministic HsuTestEvents and random values of any schema.
//! - [`produce`]: I/O: the load generator behind `spillway produce`.
//! - [`manifest`]: I/O: reads pipeline manifests from files and runs the full validation
//!   (the API crate's pure checks plus what needs the filesystem, such as schema files).
//!
//! The data path (source → decode → transform → sink → commit) lands module by module.

pub mod cli;
pub mod decode;
pub mod format;
pub mod generate;
pub mod manifest;
pub mod produce;
pub mod registry;
pub mod secrets;
pub mod source;
