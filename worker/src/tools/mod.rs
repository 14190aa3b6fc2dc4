//! The worker's tools beside the pipeline: benchmarks, the load generator, the table
//! maintenance commands and the schema-compatibility check, each behind a `spillway`
//! subcommand.

pub mod bench_merge;
pub mod bench_pipeline;
pub mod bench_table;
pub mod compat;
pub mod generate;
pub mod maintain;
pub mod produce;
