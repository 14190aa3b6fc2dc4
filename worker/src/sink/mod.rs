//! Sinks: where committed micro-batches land.
//!
//! - [`delta`]: I/O: Delta tables with per-partition `txn` actions (exactly once).

pub mod delta;
