//! Pure: the CEL rules of the CRD (`x-kubernetes-validations`) and their messages.
//!
//! Each rule is a `(rule, message, field path)` triple used twice: by the `KubeSchema` derive,
//! which writes it into the CRD, and by [`crate::validate`], which checks the same invariant in
//! Rust so `spillway validate` works without a cluster and reports the same path and message.

/// One CEL rule: the expression, the message shown when it is false, and the field it blames
/// (relative to the object the rule is attached to, as Kubernetes' `fieldPath`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CelRule {
    /// The CEL expression; `self` is the object the rule is attached to.
    pub rule: &'static str,
    /// The message reported when the rule evaluates to false.
    pub message: &'static str,
    /// Kubernetes `fieldPath`, relative to the rule's object; empty for the object itself.
    pub field_path: &'static str,
}

macro_rules! rules {
    ($($(#[$doc:meta])* $name:ident = ($rule:expr, $msg:expr, $path:expr);)*) => {
        $($(#[$doc])* pub const $name: CelRule = CelRule { rule: $rule, message: $msg, field_path: $path };)*
        /// Every rule, for tests that check the CRD carries them all.
        pub const ALL: &[CelRule] = &[$($name),*];
    };
}

rules! {
    /// `spec.maintenance` compacts and vacuums Delta tables only.
    MAINTENANCE_NEEDS_DELTA = ("!has(self.maintenance) || has(self.sink.delta)",
        "maintenance requires a delta sink", ".maintenance");
    /// `spec.source.kafka`: one of topics / topicPattern.
    KAFKA_TOPICS_XOR_PATTERN = ("has(self.topics) != has(self.topicPattern)",
        "exactly one of topics or topicPattern must be set", "");
    /// `startingOffsets: timestamp` needs the timestamp.
    KAFKA_TIMESTAMP_NEEDS_VALUE = ("!has(self.startingOffsets) || self.startingOffsets != 'timestamp' || has(self.startingTimestamp)",
        "startingOffsets timestamp requires startingTimestamp", ".startingTimestamp");
    /// `startingOffsets: offsets` needs the per-partition offsets.
    KAFKA_OFFSETS_NEED_VALUE = ("!has(self.startingOffsets) || self.startingOffsets != 'offsets' || has(self.startingPartitionOffsets)",
        "startingOffsets offsets requires startingPartitionOffsets", ".startingPartitionOffsets");
    /// `endingOffsets: timestamp` needs the timestamp.
    KAFKA_ENDING_TIMESTAMP_NEEDS_VALUE = ("!has(self.endingOffsets) || self.endingOffsets != 'timestamp' || has(self.endingTimestamp)",
        "endingOffsets timestamp requires endingTimestamp", ".endingTimestamp");
    /// `endingOffsets: offsets` needs the per-partition offsets.
    KAFKA_ENDING_OFFSETS_NEED_VALUE = ("!has(self.endingOffsets) || self.endingOffsets != 'offsets' || has(self.endingPartitionOffsets)",
        "endingOffsets offsets requires endingPartitionOffsets", ".endingPartitionOffsets");
    /// A bounded run by time ends after it starts (`format: date-time` strings are CEL
    /// timestamps).
    KAFKA_TIMESTAMPS_IN_ORDER = ("!has(self.startingOffsets) || self.startingOffsets != 'timestamp' || !has(self.startingTimestamp) || !has(self.endingOffsets) || self.endingOffsets != 'timestamp' || !has(self.endingTimestamp) || self.startingTimestamp <= self.endingTimestamp",
        "endingTimestamp must not be before startingTimestamp", ".endingTimestamp");
    /// Credentials never go into plain librdkafka properties: no key that names one
    /// (the words of [`crate::validate::SENSITIVE_PROPERTY_WORDS`], in the same order).
    KAFKA_PROPERTIES_NO_SECRETS = ("!has(self.properties) || !self.properties.exists(k, k.lowerAscii().contains('password') || k.lowerAscii().contains('passphrase') || k.lowerAscii().contains('secret') || k.lowerAscii().contains('username') || k.lowerAscii().contains('pem') || k.lowerAscii().contains('jaas') || k.lowerAscii().contains('credential') || k.lowerAscii().contains('oauthbearer.config') || k.lowerAscii().contains('private.key') || k.lowerAscii().contains('ssl_key'))",
        "credentials cannot be set in properties: use security with secret references", ".properties");
    /// Properties Spillway owns for exactly-once cannot be overridden.
    KAFKA_PROPERTIES_NOT_MANAGED = ("!has(self.properties) || !self.properties.exists(k, k in ['bootstrap.servers', 'group.id', 'enable.auto.commit', 'enable.auto.offset.store', 'enable.partition.eof', 'isolation.level', 'auto.offset.reset'])",
        "bootstrap.servers, group.id, enable.auto.commit, enable.auto.offset.store, enable.partition.eof, isolation.level and auto.offset.reset are managed by spillway", ".properties");
    /// The loop positions whole (eager) assignments from the sink; incremental rebalancing
    /// (cooperative-sticky, or the KIP-848 consumer protocol) is refused, not half-run.
    KAFKA_EAGER_REBALANCE = ("!has(self.properties) || ((!('partition.assignment.strategy' in self.properties) || !self.properties['partition.assignment.strategy'].contains('cooperative-sticky')) && (!('group.protocol' in self.properties) || self.properties['group.protocol'] == 'classic'))",
        "incremental rebalancing is not supported: partition.assignment.strategy must not include cooperative-sticky and group.protocol must be classic (use range or roundrobin)", ".properties");
    /// SASL protocols need SASL settings.
    SECURITY_SASL_NEEDS_CONFIG = ("!(self.protocol in ['SASL_PLAINTEXT', 'SASL_SSL']) || has(self.sasl)",
        "protocol SASL_PLAINTEXT or SASL_SSL requires sasl", ".sasl");
    /// SASL settings need a SASL protocol.
    SECURITY_SASL_NEEDS_PROTOCOL = ("!has(self.sasl) || self.protocol in ['SASL_PLAINTEXT', 'SASL_SSL']",
        "sasl requires protocol SASL_PLAINTEXT or SASL_SSL", ".protocol");
    /// TLS settings need a TLS protocol.
    SECURITY_TLS_NEEDS_PROTOCOL = ("!has(self.tls) || self.protocol in ['SSL', 'SASL_SSL']",
        "tls requires protocol SSL or SASL_SSL", ".protocol");
    /// One value format.
    FORMAT_EXACTLY_ONE = ("[has(self.avro), has(self.json), has(self.protobuf)].filter(x, x).size() == 1",
        "exactly one of avro, json or protobuf must be set", "");
    /// A Protobuf message type comes from `.proto` source or a descriptor set.
    PROTOBUF_SCHEMA_EXACTLY_ONE = ("has(self.schema) != has(self.descriptorSet)",
        "exactly one of schema or descriptorSet must be set", "");
    /// Confluent-framed Protobuf names its schema by registry id.
    PROTOBUF_CONFLUENT_NEEDS_REGISTRY = ("self.encoding != 'confluent' || has(self.schemaRegistry)",
        "confluent encoding requires schemaRegistry", ".schemaRegistry");
    /// `.proto` source from the registry needs a registry.
    PROTOBUF_SCHEMA_REGISTRY_NEEDS_REGISTRY = ("!has(self.schema) || !has(self.schema.registry) || has(self.schemaRegistry)",
        "schema.registry requires schemaRegistry", ".schema");
    /// A descriptor set comes from one place.
    DESCRIPTOR_SET_EXACTLY_ONE = ("has(self.file) != has(self.configMapKeyRef)",
        "exactly one of file or configMapKeyRef must be set", "");
    /// Confluent-framed JSON names its schema by registry id.
    JSON_CONFLUENT_NEEDS_REGISTRY = ("!has(self.encoding) || self.encoding != 'confluent' || has(self.schemaRegistry)",
        "confluent encoding requires schemaRegistry", ".schemaRegistry");
    /// A row schema from the registry needs a registry.
    JSON_SCHEMA_REGISTRY_NEEDS_REGISTRY = ("!has(self.schema.registry) || has(self.schemaRegistry)",
        "schema.registry requires schemaRegistry", ".schema");
    /// Raw (schemaless) Avro carries no schema id: the writer schema must be given.
    AVRO_RAW_NEEDS_WRITER = ("self.encoding != 'raw' || has(self.writerSchema)",
        "raw encoding requires writerSchema", ".writerSchema");
    /// Confluent wire format names its writer schema by registry id.
    AVRO_CONFLUENT_NEEDS_REGISTRY = ("self.encoding != 'confluent' || has(self.schemaRegistry)",
        "confluent encoding requires schemaRegistry", ".schemaRegistry");
    /// Confluent wire format takes the writer schema from the registry.
    AVRO_CONFLUENT_NO_WRITER = ("self.encoding != 'confluent' || !has(self.writerSchema)",
        "confluent encoding reads writer schemas from the registry: remove writerSchema", ".writerSchema");
    /// A reader schema from the registry needs a registry.
    AVRO_READER_REGISTRY_NEEDS_REGISTRY = ("!has(self.readerSchema) || !has(self.readerSchema.registry) || has(self.schemaRegistry)",
        "readerSchema.registry requires schemaRegistry", ".readerSchema");
    /// Record types are told apart by the writer schema behind each record's id.
    AVRO_RECORD_NAMES_NEED_CONFLUENT = ("!has(self.recordNames) || size(self.recordNames) == 0 || self.encoding == 'confluent'",
        "recordNames requires confluent encoding (raw values carry no writer schema id)", ".recordNames");
    /// A writer schema comes from exactly one place.
    SCHEMA_SOURCE_EXACTLY_ONE = ("(has(self.inline) ? 1 : 0) + (has(self.file) ? 1 : 0) + (has(self.configMapKeyRef) ? 1 : 0) == 1",
        "exactly one of inline, file or configMapKeyRef must be set", "");
    /// A reader schema comes from exactly one place.
    READER_SCHEMA_EXACTLY_ONE = ("(has(self.registry) ? 1 : 0) + (has(self.inline) ? 1 : 0) + (has(self.file) ? 1 : 0) + (has(self.configMapKeyRef) ? 1 : 0) == 1",
        "exactly one of registry, inline, file or configMapKeyRef must be set", "");
    /// The checkpoint is not the sink's own location.
    CHECKPOINT_NOT_SINK = ("!(has(self.sink.delta) && self.sink.delta.uri == self.checkpoint.uri) && !(has(self.sink.parquet) && self.sink.parquet.uri == self.checkpoint.uri)",
        "the checkpoint uri must differ from the sink uri", ".checkpoint.uri");
    /// A location is on a store the worker has: S3 (with a bucket), a local file system or
    /// memory. Attached to every URI field.
    URI_SCHEME = ("!self.contains('://') || self.matches('^(s3a?://[^/]|file://|memory://)')",
        "unsupported uri: use s3://bucket/path, s3a://bucket/path, file:///path, memory:/// or a local path", "");
    /// Exactly one sink.
    SINK_EXACTLY_ONE = ("has(self.delta) != has(self.parquet)",
        "exactly one of delta or parquet must be set", "");
    /// Merge mode needs its keys.
    DELTA_MERGE_NEEDS_KEYS = ("!has(self.mode) || self.mode != 'merge' || has(self.merge)",
        "mode merge requires merge with keys", ".merge");
    /// Merge settings only make sense in merge mode.
    DELTA_MERGE_NEEDS_MODE = ("!has(self.merge) || (has(self.mode) && self.mode == 'merge')",
        "merge settings require mode merge", ".mode");
    /// Plain HTTP object stores must be allowed explicitly.
    STORAGE_HTTP_NEEDS_ALLOW = ("!has(self.endpoint) || !self.endpoint.startsWith('http://') || (has(self.allowHttp) && self.allowHttp)",
        "an http:// endpoint requires allowHttp: true", ".allowHttp");
    /// Credentials never go into plain object-store options.
    STORAGE_OPTIONS_NO_SECRETS = ("!has(self.options) || !self.options.exists(k, k.lowerAscii().contains('secret') || k.lowerAscii().contains('password') || k.lowerAscii().contains('access_key'))",
        "credentials cannot be set in options: use credentialsSecretRef", ".options");
    /// A processing-time interval is longer than zero (omit the trigger for the default).
    TRIGGER_INTERVAL_POSITIVE = ("!has(self.interval) || duration(self.interval) > duration('0s')",
        "interval must be longer than 0s", ".interval");
    /// The allowed lateness is bounded, so the watermark arithmetic cannot overflow.
    EVENT_TIME_LATENESS_BOUNDED = ("!has(self.allowedLateness) || duration(self.allowedLateness) <= duration('87600h')",
        "allowedLateness must be at most 87600h (10 years)", ".allowedLateness");
    /// Registry credentials are secret references, never userinfo in the URL.
    REGISTRY_URL_NO_USERINFO = ("!self.url.matches('^[a-zA-Z][a-zA-Z0-9+.-]*://[^/?#]*@')",
        "the url cannot carry credentials (user:password@): use basicAuth with secret references", ".url");
    /// A bounded run (`endingOffsets`) has no processing-time interval.
    BOUNDED_NO_INTERVAL = ("!has(self.source.kafka.endingOffsets) || !has(self.trigger) || !has(self.trigger.interval)",
        "a bounded run (source.kafka.endingOffsets) cannot have trigger.interval", ".trigger.interval");
    /// A trigger is an interval or availableNow, not both.
    TRIGGER_EXCLUSIVE = ("!(has(self.interval) && has(self.availableNow) && self.availableNow)",
        "interval and availableNow are mutually exclusive", "");
    /// The dead-letter policy needs a destination.
    ERRORS_DEAD_LETTER_NEEDS_DESTINATION = ("!has(self.onBadRecord) || self.onBadRecord != 'deadLetter' || has(self.deadLetter)",
        "onBadRecord deadLetter requires deadLetter", ".deadLetter");
    /// A dead-letter destination is one Kafka topic or one Delta table.
    DEAD_LETTER_EXACTLY_ONE = ("has(self.kafka) != has(self.delta)",
        "exactly one of kafka or delta must be set", "");
    /// Vacuum keeps at least a week of history unless told otherwise.
    VACUUM_RETENTION_MINIMUM = ("!has(self.retention) || (has(self.allowShortRetention) && self.allowShortRetention) || duration(self.retention) >= duration('168h')",
        "retention below 168h requires allowShortRetention: true", ".retention");
}

impl From<CelRule> for kube::core::Rule {
    fn from(r: CelRule) -> Self {
        let rule = kube::core::Rule::new(r.rule).message(r.message);
        if r.field_path.is_empty() {
            rule
        } else {
            rule.field_path(r.field_path)
        }
    }
}
