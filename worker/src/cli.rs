//! The `spillway` command line: argument types and one function per command.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::tools::produce::{Encoding, ProduceOptions, ValueFormat};

/// Spillway: Kafka → Avro → Delta Lake / Parquet streaming ingestion, exactly once.
///
/// The same StreamingPipeline manifest runs on Kubernetes (through the operator) and here.
#[derive(Debug, Parser)]
#[command(name = "spillway", version, about, long_about)]
pub struct Cli {
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// Commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check pipeline manifests without a cluster: parse, apply defaults, and check every
    /// invariant the CRD's schema and CEL rules check, plus local schema files. Prints each
    /// problem with its field path; exits 1 if any manifest is invalid.
    Validate {
        /// Manifest file (YAML or JSON); repeat for several.
        #[arg(short = 'f', long = "file", required = true)]
        files: Vec<PathBuf>,
        /// Also ask the schema registry for the subject's latest schema and report whether
        /// the pipeline's Delta table can take it (new columns need `schemaEvolution:
        /// addColumns`; changed types never fit). Credentials come from
        /// `SPILLWAY_SECRET_<NAME>_<KEY>` environment variables.
        #[arg(long)]
        check_registry: bool,
    },
    /// Produce Avro records to Kafka: deterministic HsuTestEvents (users, events, amounts,
    /// millisecond timestamps) or random values of any schema, raw or Confluent-encoded,
    /// with a progress line on stderr.
    Produce(ProduceArgs),
    /// Run a pipeline manifest here, without Kubernetes, until Ctrl-C/SIGTERM (or, with
    /// `trigger.availableNow`, until the offsets present at start are committed).
    /// Credentials come from `SPILLWAY_SECRET_<NAME>_<KEY>` environment variables.
    Run {
        /// Manifest file.
        #[arg(short = 'f', long = "file")]
        file: PathBuf,
        /// Address of the `/progress`, `/metrics`, `/healthz`, `/readyz` server, `HOST:PORT`
        /// (an IPv6 host with or without brackets). The operator's pods pass their pod IP.
        #[arg(
            long,
            env = "SPILLWAY_HTTP_ADDR",
            default_value = "0.0.0.0:8080",
            value_parser = parse_http_addr
        )]
        http: std::net::SocketAddr,
        /// Write the final state here as one line of JSON when the run ends by itself
        /// (`Completed`, or `Failed`/`DataLoss` with the reason): a Kubernetes container's
        /// termination message, which the operator reads after the process is gone.
        #[arg(long, env = "SPILLWAY_TERMINATION_LOG")]
        termination_log: Option<PathBuf>,
    },
    /// The main job on embedded defaults, with nothing installed: an in-process Kafka
    /// (librdkafka's mock cluster), the load generator, and the HsuTestEvent pipeline into a
    /// local Delta table; progress per batch, then a summary with a few rows.
    Demo {
        /// Stop after this long (Go duration); Ctrl-C stops earlier.
        #[arg(long, default_value = "15s", value_parser = parse_duration)]
        duration: std::time::Duration,
        /// Records the generator produces.
        #[arg(long, default_value_t = 1_000_000)]
        count: u64,
        /// Generator rate, records per second (0 = as fast as possible).
        #[arg(long, default_value_t = 200_000)]
        rps: u64,
        /// Directory of the Delta table and checkpoint (default: a new temporary directory).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Address of the demo's `/progress` and `/metrics` server.
        #[arg(long, default_value = "127.0.0.1:8080")]
        http: std::net::SocketAddr,
    },
    /// Benchmarks that print figures and ratios measured side by side in one run.
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Maintenance of a pipeline's Delta table (what the operator's CronJobs run):
    /// compaction of small files, or vacuum of unreferenced ones. Safe while the pipeline
    /// runs. Credentials come from `SPILLWAY_SECRET_<NAME>_<KEY>` environment variables.
    #[command(subcommand)]
    Maintain(MaintainCommand),
}

/// `spillway maintain` actions.
#[derive(Debug, Subcommand)]
pub enum MaintainCommand {
    /// Compact small files into files of about the target size (bin-packing); the rows are
    /// unchanged, readers see the same table with fewer files.
    Optimize {
        /// Manifest file.
        #[arg(short = 'f', long = "file")]
        file: PathBuf,
        /// Target file size in bytes (default: `maintenance.optimize.targetFileSize`, else
        /// 100 MiB).
        #[arg(long)]
        target_file_size: Option<u64>,
    },
    /// Delete data files no longer referenced by the table and older than the retention.
    Vacuum {
        /// Manifest file.
        #[arg(short = 'f', long = "file")]
        file: PathBuf,
        /// Retention (Go duration; default: `maintenance.vacuum.retention`, else 168h).
        #[arg(long, value_parser = parse_duration)]
        retention: Option<std::time::Duration>,
        /// Allow a retention below 7 days (readers of older table versions may fail).
        #[arg(long)]
        allow_short_retention: bool,
        /// List what would be deleted without deleting it.
        #[arg(long)]
        dry_run: bool,
    },
}

/// `spillway produce` arguments.
#[derive(Debug, Args)]
pub struct ProduceArgs {
    /// Kafka bootstrap servers.
    #[arg(
        long,
        env = "SPILLWAY_KAFKA_BOOTSTRAP",
        default_value = "127.0.0.1:9092"
    )]
    pub bootstrap: String,
    /// Topic to produce to.
    #[arg(long, default_value = "hsudemo")]
    pub topic: String,
    /// Records per second; 0 = as fast as possible.
    #[arg(long, default_value_t = 0)]
    pub rps: u64,
    /// Records to produce.
    #[arg(long, default_value_t = 100_000)]
    pub count: u64,
    /// Seed: the same seed produces the same records.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Use the user (`user-NNNN`) as the record key, so a user's events stay in order on
    /// one partition.
    #[arg(long)]
    pub key_by_user: bool,
    /// Value format: `avro` (HsuTestEvents, or random values of `--schema`) or `json` (the
    /// orders example: order_id, customer_id, amount, status, order_timestamp).
    #[arg(long, value_enum, default_value_t = ValueFormat::Avro)]
    pub format: ValueFormat,
    /// Value encoding: `raw` (the bare body) or `confluent` (magic byte 0, the 4-byte
    /// schema id, then the body; the schema is registered as `<topic>-value`, for JSON as
    /// a JSON Schema).
    #[arg(long, value_enum, default_value_t = Encoding::Raw)]
    pub encoding: Encoding,
    /// Schema registry URL (Confluent encoding registers the schema as `<topic>-value`).
    #[arg(long)]
    pub schema_registry: Option<String>,
    /// Avro schema file of the values (random values are generated); HsuTestEvent if absent.
    #[arg(long)]
    pub schema: Option<PathBuf>,
    /// Create the topic with this many partitions if it does not exist.
    #[arg(long)]
    pub partitions: Option<i32>,
    /// Extra librdkafka producer property, `key=value`; repeatable.
    #[arg(short = 'X', value_parser = parse_kv)]
    pub property: Vec<(String, String)>,
}

/// Benchmarks.
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Decoding, one thread: Avro (our columnar decoder against apache-avro's
    /// `from_avro_datum` into `Value`, for HsuTestEvent and a wide nested schema), then JSON
    /// (our decoder against arrow-json's with the same Arrow schema and serde_json into
    /// `Value`, for HsuTestEvent and the orders JSON Schema), then Protobuf (our decoder
    /// against prost-reflect's `DynamicMessage`, for HsuTestEvent and a nested order), on
    /// the same payloads.
    Decode {
        /// Records per schema.
        #[arg(long, default_value_t = 1_000_000)]
        records: usize,
        /// Seed of the payload generator.
        #[arg(long, default_value_t = 42)]
        seed: u64,
    },
    /// Delta MERGE against append of the same rows, on the movie-ratings shape: a table of
    /// `--rows` ratings over `--days` days partitioned by `event_date`, then `--batches`
    /// batches of `--batch` rows (25 % updates of keys from the last 5 days, 50 % new keys,
    /// 15 % redeliveries, 10 % behind the watermark) merged as `mode: merge` with
    /// `allowedLateness: 120h` does, and appended to a copy of the table; prints each
    /// batch's times, rows inserted, updated and rewritten, files scanned and skipped, and
    /// the ratio merge/append.
    Merge {
        /// Rows of the table before the merges.
        #[arg(long, default_value_t = 10_000_000)]
        rows: u64,
        /// Days the table spans (one `event_date` partition each; at least 6).
        #[arg(long, default_value_t = 365)]
        days: u32,
        /// Rows per append while building the table (in date order, a backfill).
        #[arg(long, default_value_t = 1_000_000)]
        build_batch: u64,
        /// Rows per arriving batch.
        #[arg(long, default_value_t = 100_000)]
        batch: u64,
        /// Arriving batches.
        #[arg(long, default_value_t = 10)]
        batches: u64,
        /// Also MERGE each batch into another copy through delta-rs's `merge` on the key
        /// alone, without the watermark's partition floor, and print its figures beside.
        #[arg(long)]
        plain: bool,
        /// Also MERGE each batch into another copy through delta-rs's `merge` with the
        /// same floor (what the sink's own MERGE gains), and print its figures beside.
        #[arg(long)]
        delta_rs: bool,
        /// Seed of the batches' mix.
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Directory of the tables (default: a new temporary directory, removed after).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// How long a table with many streaming commits takes to open: makes `--commits`
    /// commits (one `txn` action each, like a pipeline's batches) with the checkpoints
    /// delta-rs writes as it goes, then opens the table.
    Log {
        /// Commits to make.
        #[arg(long, default_value_t = 100_000)]
        commits: u64,
        /// Create the table with this `delta.logRetentionDuration` (e.g. `interval 10
        /// seconds`): each checkpoint then also removes older commit files, as a
        /// long-running table's log is kept short.
        #[arg(long)]
        log_retention: Option<String>,
        /// Directory of the table (default: a new temporary directory, removed after).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Kafka → Delta and Kafka → Parquet end to end against the raw consume ceiling, on one
    /// topic in one run: preloads HsuTestEvents (reusing the topic when it already holds
    /// them), then (a) reads every payload with rdkafka, no processing, with librdkafka's
    /// default fetch settings and with the worker's (the faster is the ceiling), (b) runs the
    /// pipeline with `availableNow` into a new local Delta table and (c) into a new local
    /// Parquet dataset; prints records/s, MB/s, CPU seconds per million records, peak RSS
    /// and the ratios b/a and c/a.
    Pipeline {
        /// Kafka bootstrap servers.
        #[arg(
            long,
            env = "SPILLWAY_KAFKA_BOOTSTRAP",
            default_value = "127.0.0.1:9092"
        )]
        bootstrap: String,
        /// Records to preload.
        #[arg(long, default_value_t = 2_000_000)]
        records: u64,
        /// Partitions of the topic.
        #[arg(long, default_value_t = 4)]
        partitions: i32,
        /// Topic (default: `spillway-bench-<records>-<partitions>`).
        #[arg(long)]
        topic: Option<String>,
        /// Directory of the Delta table, the Parquet dataset and their checkpoints (default:
        /// a new temporary directory).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Seed of the generator.
        #[arg(long, default_value_t = 42)]
        seed: u64,
    },
}

fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    spillway_api::validate::parse_duration(s)
        .ok_or_else(|| format!("invalid duration {s:?}: use e.g. 30s, 2m"))
}

/// `HOST:PORT`, also with a bare IPv6 host (see `spillway_api::validate::parse_socket_addr`).
pub fn parse_http_addr(s: &str) -> Result<std::net::SocketAddr, String> {
    spillway_api::validate::parse_socket_addr(s)
        .ok_or_else(|| format!("invalid address {s:?}: use HOST:PORT, e.g. 0.0.0.0:8080"))
}

fn parse_kv(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("expected key=value, got {s:?}"))
}

/// `spillway validate`.
pub async fn validate(files: &[PathBuf], check_registry: bool) -> ExitCode {
    let mut ok = true;
    for file in files {
        match crate::manifest::load(file) {
            Ok(loaded) => {
                let meta = &loaded.pipeline.metadata;
                println!(
                    "{}: valid StreamingPipeline {}/{}",
                    file.display(),
                    meta.namespace.as_deref().unwrap_or("default"),
                    meta.name.as_deref().unwrap_or_default()
                );
                if check_registry {
                    match crate::tools::compat::check_registry(&loaded, &crate::secrets::EnvSecrets)
                        .await
                    {
                        Ok(v) => {
                            println!("{}: {}", file.display(), v.message);
                            ok &= v.compatible;
                        }
                        Err(e) => {
                            eprintln!("{}: registry check failed: {e}", file.display());
                            ok = false;
                        }
                    }
                }
            }
            Err(e) => {
                ok = false;
                print_problems(file, &e);
            }
        }
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// `spillway produce`.
pub async fn produce(a: ProduceArgs) -> anyhow::Result<ExitCode> {
    let opts = ProduceOptions {
        bootstrap: a.bootstrap,
        topic: a.topic,
        rps: a.rps,
        count: a.count,
        seed: a.seed,
        key_by_user: a.key_by_user,
        format: a.format,
        encoding: a.encoding,
        schema_registry: a.schema_registry,
        schema: a.schema,
        partitions: a.partitions,
        properties: a.property,
    };
    let total = opts.count;
    let summary = crate::tools::produce::produce(&opts, |n, bytes, elapsed| {
        let secs = elapsed.as_secs_f64().max(1e-9);
        eprint!(
            "\rproduced {n}/{total} records to {} ({:.0} rec/s, {:.1} MB/s)   ",
            opts.topic,
            n as f64 / secs,
            bytes as f64 / secs / 1e6
        );
    })
    .await?;
    eprintln!();
    println!(
        "produced {} records ({} bytes) to {} in {:.2}s: {:.0} records/s{}",
        summary.records,
        summary.bytes,
        opts.topic,
        summary.elapsed.as_secs_f64(),
        summary.rate(),
        summary
            .schema_id
            .map(|id| format!(", schema id {id}"))
            .unwrap_or_default()
    );
    Ok(ExitCode::SUCCESS)
}

/// `spillway maintain …`.
pub async fn maintain(cmd: MaintainCommand) -> anyhow::Result<ExitCode> {
    let file = match &cmd {
        MaintainCommand::Optimize { file, .. } | MaintainCommand::Vacuum { file, .. } => file,
    };
    let loaded = match crate::manifest::load(file) {
        Ok(l) => l,
        Err(e) => {
            print_problems(file, &e);
            return Ok(ExitCode::FAILURE);
        }
    };
    let secrets = crate::secrets::EnvSecrets;
    let outcome = match cmd {
        MaintainCommand::Optimize {
            target_file_size, ..
        } => crate::tools::maintain::optimize(&loaded, &secrets, target_file_size).await,
        MaintainCommand::Vacuum {
            retention,
            allow_short_retention,
            dry_run,
            ..
        } => {
            crate::tools::maintain::vacuum(
                &loaded,
                &secrets,
                retention,
                allow_short_retention,
                dry_run,
            )
            .await
        }
    };
    match outcome {
        Ok(o) => {
            println!("{o}");
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("spillway maintain: {e}");
            Ok(ExitCode::FAILURE)
        }
    }
}

/// `spillway bench …`.
pub fn bench(cmd: BenchCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        BenchCommand::Decode { records, seed } => {
            let rows = crate::decode::bench::run_decode_bench(records, seed)?;
            print!("{}", crate::decode::bench::format_report(&rows));
            println!();
            let rows = crate::decode::bench::run_json_bench(records, seed)?;
            print!("{}", crate::decode::bench::format_json_report(&rows));
            println!();
            let rows = crate::decode::bench::run_protobuf_bench(records, seed)?;
            print!("{}", crate::decode::bench::format_protobuf_report(&rows));
        }
        BenchCommand::Merge {
            rows,
            days,
            build_batch,
            batch,
            batches,
            plain,
            delta_rs,
            seed,
            dir,
        } => {
            let o = crate::tools::bench_merge::MergeBenchOptions {
                rows,
                days,
                build_batch,
                batch,
                batches,
                plain,
                delta_rs,
                dir,
                seed,
            };
            let r = tokio::runtime::Runtime::new()?.block_on(crate::tools::bench_merge::run(&o))?;
            print!("{}", crate::tools::bench_merge::format_merge(&r));
        }
        BenchCommand::Log {
            commits,
            dir,
            log_retention,
        } => {
            let r = tokio::runtime::Runtime::new()?.block_on(crate::tools::bench_table::log(
                dir,
                commits,
                log_retention,
            ))?;
            print!("{}", crate::tools::bench_table::format_log(&r));
        }
        BenchCommand::Pipeline {
            bootstrap,
            records,
            partitions,
            topic,
            dir,
            seed,
        } => {
            let b = crate::tools::bench_pipeline::PipelineBench {
                bootstrap,
                records,
                partitions,
                topic,
                dir,
                seed,
            };
            let report =
                tokio::runtime::Runtime::new()?.block_on(crate::tools::bench_pipeline::run(&b))?;
            print!("{}", crate::tools::bench_pipeline::format_report(&report));
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_problems(file: &std::path::Path, e: &crate::manifest::ManifestError) {
    eprintln!("{}: invalid", file.display());
    for p in e.problems() {
        if p.path.is_empty() {
            eprintln!("  {}", p.message);
        } else {
            eprintln!("  {}: {}", p.path, p.message);
        }
    }
}

/// `spillway run`.
pub async fn run(file: PathBuf, serve: crate::runner::Serve) -> anyhow::Result<ExitCode> {
    let loaded = match crate::manifest::load(&file) {
        Ok(l) => l,
        Err(e) => {
            print_problems(&file, &e);
            return Ok(ExitCode::FAILURE);
        }
    };
    let shutdown = tokio_util::sync::CancellationToken::new();
    crate::runner::cancel_on_signals(shutdown.clone());
    let print: crate::engine::BatchCallback =
        std::sync::Arc::new(|r| println!("{}", crate::runner::batch_line(r)));
    match crate::runner::run_pipeline(&loaded, &serve, shutdown, Default::default(), Some(print))
        .await
    {
        Ok(s) => {
            println!(
                "stopped: {} batches, {} rows, {} bad records skipped, table version {}",
                s.batches,
                s.rows,
                s.skipped,
                s.table_version.map_or("-".into(), |v| v.to_string())
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(crate::runner::RunError::Engine(e)) => {
            eprintln!("pipeline failed ({}): {e}", <&'static str>::from(&e));
            Ok(ExitCode::FAILURE)
        }
        Err(e) => {
            eprintln!("spillway run: {e}");
            Ok(ExitCode::FAILURE)
        }
    }
}

/// `spillway demo`.
pub async fn demo(
    duration: std::time::Duration,
    count: u64,
    rps: u64,
    dir: Option<PathBuf>,
    http: std::net::SocketAddr,
) -> anyhow::Result<ExitCode> {
    use rdkafka::mocking::MockCluster;
    let mock = MockCluster::new(1)?;
    mock.create_topic("hsudemo", 4, 1)?;
    let bootstrap = mock.bootstrap_servers();
    let dir = dir.unwrap_or_else(crate::runner::default_demo_dir);
    std::fs::create_dir_all(&dir)?;
    println!(
        "spillway demo: in-process Kafka at {bootstrap} (topic hsudemo, 4 partitions), {count} HsuTestEvents at {} into the Delta table {}",
        if rps == 0 {
            "full speed".to_string()
        } else {
            format!("{rps}/s")
        },
        dir.join("hsutest").display()
    );
    println!("progress: http://{http}/progress   metrics: http://{http}/metrics   (Ctrl-C stops)");
    let tally = crate::runner::DemoTally::default();
    let producer = tokio::spawn(crate::runner::produce_into(
        bootstrap.clone(),
        count,
        rps,
        tally.clone(),
    ));
    let manifest = crate::runner::demo_manifest(&bootstrap, &dir);
    let loaded = crate::manifest::load_str(&manifest, std::path::Path::new("demo.yaml"), &dir)?;
    let shutdown = tokio_util::sync::CancellationToken::new();
    crate::runner::cancel_on_signals(shutdown.clone());
    tokio::spawn(crate::runner::stop_demo(
        tally.clone(),
        duration,
        shutdown.clone(),
    ));
    let counter = tally.clone();
    let print: crate::engine::BatchCallback = std::sync::Arc::new(move |r| {
        counter.committed(r.sink.num_output_rows);
        println!("{}", crate::runner::batch_line(r));
    });
    let serve = crate::runner::Serve {
        http: Some(http),
        termination_log: None,
    };
    let summary =
        crate::runner::run_pipeline(&loaded, &serve, shutdown, Default::default(), Some(print))
            .await;
    producer.abort();
    let summary = summary?;
    println!("\n{}", tally.verdict(&summary, duration));
    if summary.batches > 0 {
        println!(
            "{}",
            crate::runner::table_summary(&dir.join("hsutest")).await?
        );
    }
    drop(mock);
    Ok(ExitCode::SUCCESS)
}
