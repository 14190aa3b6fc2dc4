//! I/O: the load generator behind `spillway produce` — deterministic HsuTestEvents (or
//! random values of any schema), raw or Confluent-encoded, at a target rate.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rdkafka::ClientContext;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::DeliveryResult;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer, ProducerContext, ThreadedProducer};

use crate::registry::{RegistryClient, RegistryError, RetryFor};
use crate::tools::generate::{
    HSUTEST_SCHEMA, HsuTestGenerator, ORDERS_JSON_SCHEMA, OrderGenerator, Rng, ValueGenerator,
};

/// Value encoding of produced records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Encoding {
    /// The bare Avro body.
    Raw,
    /// Magic byte 0, the 4-byte big-endian schema id, then the body.
    Confluent,
}

/// What values are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ValueFormat {
    /// Avro bodies: HsuTestEvents, or random values of `--schema`.
    Avro,
    /// JSON text: the orders example's orders (order_id, customer_id, amount, status,
    /// order_timestamp).
    Json,
}

/// What to produce.
#[derive(Debug, Clone)]
pub struct ProduceOptions {
    /// Bootstrap servers.
    pub bootstrap: String,
    /// Topic.
    pub topic: String,
    /// Records per second; 0 = as fast as possible.
    pub rps: u64,
    /// Records to produce.
    pub count: u64,
    /// Seed of the deterministic generator.
    pub seed: u64,
    /// Key records by user (`user-NNNN`).
    pub key_by_user: bool,
    /// Value format.
    pub format: ValueFormat,
    /// Value encoding.
    pub encoding: Encoding,
    /// Registry URL (Confluent encoding).
    pub schema_registry: Option<String>,
    /// A schema file; HsuTestEvent when absent.
    pub schema: Option<PathBuf>,
    /// Create the topic with this many partitions if it does not exist.
    pub partitions: Option<i32>,
    /// Extra librdkafka producer properties.
    pub properties: Vec<(String, String)>,
}

/// Errors of the load generator.
#[derive(Debug, thiserror::Error, strum::IntoStaticStr)]
pub enum ProduceError {
    /// Kafka failed.
    #[error("kafka error: {0}")]
    Kafka(#[from] KafkaError),
    /// Records were not acknowledged.
    #[error("{failed} of {count} records were not delivered (first error: {first})")]
    Delivery {
        /// Failed deliveries.
        failed: u64,
        /// Records sent.
        count: u64,
        /// The first error.
        first: String,
    },
    /// The schema file could not be read or parsed.
    #[error("invalid schema {path}: {message}")]
    Schema {
        /// The file.
        path: String,
        /// Why.
        message: String,
    },
    /// Confluent encoding without a registry.
    #[error("--encoding confluent needs --schema-registry")]
    NoRegistry,
    /// JSON values are the orders example's; a schema file is for Avro.
    #[error("--format json produces the orders example's orders: --schema is for --format avro")]
    JsonSchemaFile,
    /// The registry failed.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// A value could not be generated.
    #[error(transparent)]
    Generate(#[from] crate::tools::generate::GenerateError),
    /// The flush task could not run.
    #[error("flush task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
    /// Creating the topic failed.
    #[error("failed to create topic {topic}: {message}")]
    CreateTopic {
        /// Topic.
        topic: String,
        /// Why.
        message: String,
    },
    /// A partition of a new topic got no leader in time.
    #[error(
        "topic {topic} has no leader for every one of its {partitions} partitions after {waited:?}"
    )]
    NoLeaders {
        /// Topic.
        topic: String,
        /// Partitions expected.
        partitions: i32,
        /// How long it waited.
        waited: Duration,
    },
}

/// Totals of a run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProduceSummary {
    /// Records acknowledged.
    pub records: u64,
    /// Value bytes produced.
    pub bytes: u64,
    /// Wall time.
    pub elapsed: Duration,
    /// Schema id used (Confluent encoding).
    pub schema_id: Option<u32>,
}

impl ProduceSummary {
    /// Records per second.
    pub fn rate(&self) -> f64 {
        self.records as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

#[derive(Default)]
struct Deliveries {
    ok: AtomicU64,
    failed: AtomicU64,
    first: std::sync::Mutex<Option<String>>,
}

struct Counting(Arc<Deliveries>);

impl ClientContext for Counting {}

impl ProducerContext for Counting {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => {
                self.0.ok.fetch_add(1, Ordering::Relaxed);
            }
            Err((e, _)) => {
                self.0.failed.fetch_add(1, Ordering::Relaxed);
                if let Ok(mut f) = self.0.first.lock() {
                    f.get_or_insert_with(|| e.to_string());
                }
            }
        }
    }
}

enum Source {
    Hsu(HsuTestGenerator),
    Any(Box<ValueGenerator>, Rng),
    Orders(OrderGenerator),
}

/// How long [`ensure_topic`] waits for the new topic's partition leaders.
pub const LEADER_WAIT: Duration = Duration::from_secs(30);

/// Creates `topic` with `partitions` if it does not exist, and returns once every
/// partition has a leader (CreateTopics returns before the leaders are elected and known
/// to every broker; records or watermark queries sent earlier fail or stall).
pub async fn ensure_topic(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
) -> Result<(), ProduceError> {
    let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
    create_topic(bootstrap, new).await
}

/// Creates a topic (with its configuration, such as `cleanup.policy`) unless it exists, and
/// waits for its partition leaders (see [`ensure_topic`]).
pub async fn create_topic(bootstrap: &str, new: NewTopic<'_>) -> Result<(), ProduceError> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()?;
    let (topic, partitions) = (new.name.to_string(), new.num_partitions);
    let results = admin.create_topics(&[new], &AdminOptions::new()).await?;
    for r in results {
        match r {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((t, code)) => {
                return Err(ProduceError::CreateTopic {
                    topic: t,
                    message: code.to_string(),
                });
            }
        }
    }
    wait_for_leaders(bootstrap, &topic, partitions).await
}

/// Polls the topic's metadata until `partitions` partitions have a leader, at most
/// [`LEADER_WAIT`] (in a blocking task: metadata requests block).
async fn wait_for_leaders(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
) -> Result<(), ProduceError> {
    let client: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()?;
    let topic = topic.to_string();
    tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        while started.elapsed() < LEADER_WAIT {
            if has_leaders(&client, &topic, partitions) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(ProduceError::NoLeaders {
            topic,
            partitions,
            waited: started.elapsed(),
        })
    })
    .await?
}

fn has_leaders(client: &BaseProducer, topic: &str, partitions: i32) -> bool {
    let Ok(md) = client
        .client()
        .fetch_metadata(Some(topic), Duration::from_secs(5))
    else {
        return false;
    };
    md.topics().iter().any(|t| {
        t.name() == topic
            && t.error().is_none()
            && t.partitions().len() >= partitions.max(0) as usize
            && t.partitions()
                .iter()
                .all(|p| p.error().is_none() && p.leader() >= 0)
    })
}

/// The generator of `opts`, and the schema a Confluent encoding registers (text, registry
/// schema type).
fn value_source(opts: &ProduceOptions) -> Result<(Source, (String, &'static str)), ProduceError> {
    if opts.format == ValueFormat::Json {
        if opts.schema.is_some() {
            return Err(ProduceError::JsonSchemaFile);
        }
        return Ok((
            Source::Orders(OrderGenerator::new(opts.seed)),
            (ORDERS_JSON_SCHEMA.to_string(), "JSON"),
        ));
    }
    let parse = |what: String, text: &str| {
        apache_avro::Schema::parse_str(text).map_err(|e| ProduceError::Schema {
            path: what,
            message: e.to_string(),
        })
    };
    let Some(path) = &opts.schema else {
        let canonical = parse("HsuTestEvent".into(), HSUTEST_SCHEMA)?.canonical_form();
        return Ok((
            Source::Hsu(HsuTestGenerator::new(opts.seed)),
            (canonical, "AVRO"),
        ));
    };
    let text = std::fs::read_to_string(path).map_err(|e| ProduceError::Schema {
        path: path.display().to_string(),
        message: e.to_string(),
    })?;
    let schema = parse(path.display().to_string(), &text)?;
    let canonical = schema.canonical_form();
    Ok((
        Source::Any(
            Box::new(ValueGenerator::new(schema, opts.seed)),
            Rng::new(opts.seed ^ 0x5eed),
        ),
        (canonical, "AVRO"),
    ))
}

/// Produces records; `progress` is called about once a second with (sent, bytes, elapsed).
pub async fn produce(
    opts: &ProduceOptions,
    mut progress: impl FnMut(u64, u64, Duration),
) -> Result<ProduceSummary, ProduceError> {
    let (mut source, registered) = value_source(opts)?;
    let schema_id = match opts.encoding {
        Encoding::Raw => None,
        Encoding::Confluent => {
            let url = opts
                .schema_registry
                .as_deref()
                .ok_or(ProduceError::NoRegistry)?;
            let client = RegistryClient::new(
                url,
                Duration::from_secs(10),
                None,
                RetryFor::AtMost(Duration::from_secs(60)),
            )?;
            let (schema, schema_type) = registered;
            Some(
                client
                    .register_typed(&format!("{}-value", opts.topic), &schema, schema_type)
                    .await?,
            )
        }
    };
    if let Some(p) = opts.partitions {
        ensure_topic(&opts.bootstrap, &opts.topic, p).await?;
    }
    let deliveries = Arc::new(Deliveries::default());
    let mut cc = ClientConfig::new();
    cc.set("bootstrap.servers", &opts.bootstrap)
        .set("linger.ms", "5")
        .set("batch.num.messages", "10000")
        .set("queue.buffering.max.messages", "1000000")
        .set("queue.buffering.max.kbytes", "1048576")
        .set("message.timeout.ms", "60000");
    for (k, v) in &opts.properties {
        cc.set(k, v);
    }
    let producer: ThreadedProducer<Counting> =
        cc.create_with_context(Counting(deliveries.clone()))?;

    let started = Instant::now();
    let mut last_report = Instant::now();
    let mut bytes = 0u64;
    let mut value = Vec::with_capacity(256);
    for i in 0..opts.count {
        value.clear();
        if let Some(id) = schema_id {
            value.push(0);
            value.extend_from_slice(&id.to_be_bytes());
        }
        let key = match &mut source {
            Source::Hsu(g) => {
                let e = g.next_event();
                e.encode(&mut value);
                e.user
            }
            Source::Any(g, rng) => {
                value.extend_from_slice(&g.next_body()?);
                format!("user-{:04}", rng.below(1000))
            }
            Source::Orders(g) => g.next_json(&mut value),
        };
        bytes += value.len() as u64;
        let mut record = BaseRecord::to(&opts.topic).payload(&value);
        if opts.key_by_user {
            record = record.key(&key);
        }
        let mut pending = record;
        loop {
            match producer.send(pending) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    pending = r;
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                Err((e, _)) => return Err(e.into()),
            }
        }
        if opts.rps > 0 {
            let due = Duration::from_secs_f64((i + 1) as f64 / opts.rps as f64);
            let now = started.elapsed();
            if due > now + Duration::from_millis(2) {
                tokio::time::sleep(due - now).await;
            }
        }
        if last_report.elapsed() >= Duration::from_secs(1) {
            progress(i + 1, bytes, started.elapsed());
            last_report = Instant::now();
        }
    }
    tokio::task::spawn_blocking(move || producer.flush(Duration::from_secs(120))).await??;
    let failed = deliveries.failed.load(Ordering::Relaxed);
    let ok = deliveries.ok.load(Ordering::Relaxed);
    if failed > 0 || ok != opts.count {
        let first = deliveries
            .first
            .lock()
            .ok()
            .and_then(|f| f.clone())
            .unwrap_or_else(|| "not acknowledged".into());
        return Err(ProduceError::Delivery {
            failed: opts.count - ok,
            count: opts.count,
            first,
        });
    }
    let elapsed = started.elapsed();
    progress(opts.count, bytes, elapsed);
    Ok(ProduceSummary {
        records: ok,
        bytes,
        elapsed,
        schema_id,
    })
}
