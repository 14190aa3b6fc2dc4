//! Pure: checks every invariant of a spec — the CRD's schema constraints and CEL rules — in
//! Rust, returning each problem with its field path, so no cluster is needed.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use crate::rules::{self, CelRule};
use crate::{
    AvroEncoding, AvroFormat, DeltaMode, EndingOffsets, JsonEncoding, OnBadRecord,
    ProtobufEncoding, ProtobufFormat, ReaderSchema, SchemaRegistrySpec, SchemaSource,
    SecurityProtocol, StartingOffsets, StreamingPipelineSpec, defaults,
};

/// One problem of a spec, at a field path such as `spec.source.kafka.topics`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Dotted field path from the resource root.
    pub path: String,
    /// What is wrong, lowercase, no trailing period.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Every problem of a spec; never empty when returned as an error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid spec: {}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
pub struct Problems(pub Vec<Problem>);

#[derive(Default)]
struct Check(Vec<Problem>);

impl Check {
    fn fail(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(Problem {
            path: path.into(),
            message: message.into(),
        });
    }
    /// Records the CEL rule `r`, attached at `base`, as failed unless `holds`.
    fn rule(&mut self, holds: bool, base: &str, r: CelRule) {
        if !holds {
            self.fail(format!("{base}{}", r.field_path), r.message);
        }
    }
    fn duration(&mut self, path: &str, value: &str) {
        if parse_duration(value).is_none() {
            self.fail(
                path,
                format!("invalid duration {value:?}: use a Go duration such as 10s, 5m or 120h"),
            );
        }
    }
    fn non_empty(&mut self, path: &str, value: &str) {
        if value.trim().is_empty() {
            self.fail(path, "must not be empty");
        }
    }
    fn uri(&mut self, path: &str, value: &str) {
        self.non_empty(path, value);
        self.rule(uri_scheme_supported(value), path, rules::URI_SCHEME);
    }
}

/// Words that make a librdkafka property key sensitive (matched case-insensitively as
/// substrings): the key names a credential or something that carries one, such as
/// `sasl.oauthbearer.config` or `sasl.oauthbearer.assertion.private.key.passphrase`.
/// The CRD's rule [`rules::KAFKA_PROPERTIES_NO_SECRETS`] lists the same words.
pub const SENSITIVE_PROPERTY_WORDS: &[&str] = &[
    "password",
    "passphrase",
    "secret",
    "username",
    "pem",
    "jaas",
    "credential",
    "oauthbearer.config",
    "private.key",
    "ssl_key",
];

/// Whether a librdkafka property key may carry a credential (see
/// [`SENSITIVE_PROPERTY_WORDS`]); its value is then never accepted in a spec nor logged.
pub fn is_sensitive_property(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    SENSITIVE_PROPERTY_WORDS.iter().any(|w| key.contains(w))
}

/// The byte range of a URL's userinfo (`user:password` in `https://user:password@host/`),
/// if it has one: what lies between `scheme://` and the last `@` of the authority.
fn userinfo_range(url: &str) -> Option<std::ops::Range<usize>> {
    let (scheme, _) = url.split_once("://")?;
    let valid_scheme = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+.-".contains(c));
    if !valid_scheme {
        return None;
    }
    let start = scheme.len() + 3;
    let authority_end = url[start..]
        .find(['/', '?', '#'])
        .map_or(url.len(), |i| start + i);
    let at = url[start..authority_end].rfind('@')?;
    Some(start..start + at)
}

/// `url` with any userinfo replaced by `***`, for logs, errors and status: a URL may carry
/// credentials even where a spec may not.
pub fn redact_url(url: &str) -> String {
    match userinfo_range(url) {
        Some(r) => format!("{}***{}", &url[..r.start], &url[r.end..]),
        None => url.to_string(),
    }
}

/// `HOST:PORT` as a socket address, also with a bare IPv6 host (`fd00::7:8080`, as
/// `$(POD_IP):8080` expands on an IPv6 cluster); `None` when it is not one.
pub fn parse_socket_addr(s: &str) -> Option<std::net::SocketAddr> {
    if let Ok(a) = s.parse() {
        return Some(a);
    }
    let (host, port) = s.rsplit_once(':')?;
    let ip: std::net::IpAddr = host.trim_matches(['[', ']']).parse().ok()?;
    Some(std::net::SocketAddr::new(ip, port.parse().ok()?))
}

/// [`rules::URI_SCHEME`]: no scheme (a local path), or `s3://`/`s3a://` with a bucket,
/// `file://` or `memory://`.
fn uri_scheme_supported(uri: &str) -> bool {
    let Some((scheme, rest)) = uri.split_once("://") else {
        return true;
    };
    match scheme {
        "s3" | "s3a" => !rest.is_empty() && !rest.starts_with('/'),
        "file" | "memory" => true,
        _ => false,
    }
}

/// `{topic: {partition: offset}}`: partitions are numbers and offsets at least `min`.
fn partition_offsets(
    c: &mut Check,
    path: &str,
    offsets: Option<&BTreeMap<String, BTreeMap<String, i64>>>,
    min: i64,
    message: &str,
) {
    for (topic, parts) in offsets.into_iter().flatten() {
        for (p, o) in parts {
            if p.parse::<u32>().is_err() {
                c.fail(
                    format!("{path}.{topic}"),
                    format!("partition {p:?} is not a number"),
                );
            }
            if *o < min {
                c.fail(format!("{path}.{topic}.{p}"), message);
            }
        }
    }
}

/// An RFC 3339 time with seconds and an offset, as the CRD's pattern for
/// `startingTimestamp` has it (`2025-01-31T12:00:00Z`, `…T12:00:00.5+01:00`): upper-case `T`
/// and `Z` only, which is what the API server's `date-time` format accepts as well.
fn rfc3339(s: &str) -> bool {
    let b = s.as_bytes();
    let digits =
        |r: std::ops::Range<usize>| b.get(r).is_some_and(|d| d.iter().all(u8::is_ascii_digit));
    let at = |i: usize, c: &[u8]| b.get(i).is_some_and(|x| c.contains(x));
    let shape = digits(0..4)
        && at(4, b"-")
        && digits(5..7)
        && at(7, b"-")
        && digits(8..10)
        && at(10, b"T")
        && digits(11..13)
        && at(13, b":")
        && digits(14..16)
        && at(16, b":")
        && digits(17..19);
    if !shape {
        return false;
    }
    let mut i = 19;
    if at(i, b".") {
        i += 1;
        let start = i;
        while at(i, b"0123456789") {
            i += 1;
        }
        if i == start {
            return false;
        }
    }
    let zone = &b[i..];
    let offset = zone.len() == 6
        && matches!(zone[0], b'+' | b'-')
        && digits(i + 1..i + 3)
        && zone[3] == b':'
        && digits(i + 4..i + 6);
    (zone == b"Z" || offset) && s.parse::<jiff::Timestamp>().is_ok()
}

/// Parses a Go-style duration (`1h30m`, `10s`, `250ms`, `1.5h`).
pub fn parse_duration(s: &str) -> Option<Duration> {
    let mut rest = s.trim();
    if rest.is_empty() {
        return None;
    }
    if rest == "0" {
        return Some(Duration::ZERO);
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let num_end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
        let value: f64 = rest[..num_end].parse().ok()?;
        rest = &rest[num_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_end] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        total += value * scale;
        rest = &rest[unit_end..];
    }
    Duration::try_from_secs_f64(total).ok()
}

fn schema_source(c: &mut Check, base: &str, s: &SchemaSource) {
    let n = [
        s.inline.is_some(),
        s.file.is_some(),
        s.config_map_key_ref.is_some(),
    ]
    .iter()
    .filter(|x| **x)
    .count();
    c.rule(n == 1, base, rules::SCHEMA_SOURCE_EXACTLY_ONE);
    if let Some(text) = &s.inline
        && serde_json::from_str::<serde_json::Value>(text).is_err()
    {
        c.fail(
            format!("{base}.inline"),
            "is not valid JSON (an Avro schema is JSON)",
        );
    }
}

/// The longest `eventTime.allowedLateness` (87600h, ten years), as the CRD's rule says.
pub const MAX_ALLOWED_LATENESS: Duration = Duration::from_secs(87_600 * 3600);

/// Checks a spec; `Ok` when it is valid.
pub fn validate(spec: &StreamingPipelineSpec) -> Result<(), Problems> {
    let mut c = Check::default();
    let s = "spec";
    if spec.replicas < 0 {
        c.fail("spec.replicas", "must be 0 or more");
    }
    c.rule(
        spec.maintenance.is_none() || spec.sink.delta.is_some(),
        s,
        rules::MAINTENANCE_NEEDS_DELTA,
    );

    // source.kafka
    let k = &spec.source.kafka;
    let kp = "spec.source.kafka";
    c.non_empty(&format!("{kp}.bootstrapServers"), &k.bootstrap_servers);
    c.rule(
        k.topics.is_some() != k.topic_pattern.is_some(),
        kp,
        rules::KAFKA_TOPICS_XOR_PATTERN,
    );
    if let Some(topics) = &k.topics {
        if topics.is_empty() {
            c.fail(format!("{kp}.topics"), "must list at least one topic");
        }
        for (i, t) in topics.iter().enumerate() {
            if t.is_empty()
                || t.len() > 249
                || !t
                    .chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || "._-".contains(ch))
            {
                c.fail(
                    format!("{kp}.topics[{i}]"),
                    format!("invalid topic name {t:?}"),
                );
            }
        }
    }
    c.rule(
        k.starting_offsets != StartingOffsets::Timestamp || k.starting_timestamp.is_some(),
        kp,
        rules::KAFKA_TIMESTAMP_NEEDS_VALUE,
    );
    c.rule(
        k.starting_offsets != StartingOffsets::Offsets || k.starting_partition_offsets.is_some(),
        kp,
        rules::KAFKA_OFFSETS_NEED_VALUE,
    );
    if let Some(ts) = &k.starting_timestamp
        && !rfc3339(ts)
    {
        c.fail(
            format!("{kp}.startingTimestamp"),
            format!("invalid RFC 3339 time {ts:?}"),
        );
    }
    partition_offsets(
        &mut c,
        &format!("{kp}.startingPartitionOffsets"),
        k.starting_partition_offsets.as_ref(),
        -2,
        "offset must be -2 (earliest), -1 (latest) or 0 and more",
    );
    c.rule(
        k.ending_offsets != Some(EndingOffsets::Timestamp) || k.ending_timestamp.is_some(),
        kp,
        rules::KAFKA_ENDING_TIMESTAMP_NEEDS_VALUE,
    );
    c.rule(
        k.ending_offsets != Some(EndingOffsets::Offsets) || k.ending_partition_offsets.is_some(),
        kp,
        rules::KAFKA_ENDING_OFFSETS_NEED_VALUE,
    );
    if let Some(ts) = &k.ending_timestamp
        && !rfc3339(ts)
    {
        c.fail(
            format!("{kp}.endingTimestamp"),
            format!("invalid RFC 3339 time {ts:?}"),
        );
    }
    let time = |t: &Option<String>| t.as_deref().and_then(|t| t.parse::<jiff::Timestamp>().ok());
    if k.starting_offsets == StartingOffsets::Timestamp
        && k.ending_offsets == Some(EndingOffsets::Timestamp)
        && let (Some(from), Some(to)) = (time(&k.starting_timestamp), time(&k.ending_timestamp))
    {
        c.rule(from <= to, kp, rules::KAFKA_TIMESTAMPS_IN_ORDER);
    }
    partition_offsets(
        &mut c,
        &format!("{kp}.endingPartitionOffsets"),
        k.ending_partition_offsets.as_ref(),
        -1,
        "offset must be -1 (latest) or 0 and more",
    );
    if let (Some(from), Some(to)) = (&k.starting_partition_offsets, &k.ending_partition_offsets)
        && k.starting_offsets == StartingOffsets::Offsets
        && k.ending_offsets == Some(EndingOffsets::Offsets)
    {
        for (topic, parts) in to {
            for (p, end) in parts {
                let start = from.get(topic).and_then(|f| f.get(p));
                if let Some(start) = start
                    && *start >= 0
                    && *end >= 0
                    && start > end
                {
                    c.fail(
                        format!("{kp}.endingPartitionOffsets.{topic}.{p}"),
                        format!("ends at {end}, before its starting offset {start}"),
                    );
                }
            }
        }
    }
    if k.max_records_per_batch < 1 {
        c.fail(format!("{kp}.maxRecordsPerBatch"), "must be 1 or more");
    }
    if !(defaults::MIN_BYTES_PER_BATCH..=defaults::MAX_BYTES_PER_BATCH_LIMIT)
        .contains(&k.max_bytes_per_batch)
    {
        c.fail(
            format!("{kp}.maxBytesPerBatch"),
            "must be between 1048576 (1 MiB) and 1073741824 (1 GiB)",
        );
    }
    if let Some(props) = &k.properties {
        const MANAGED: &[&str] = &[
            "bootstrap.servers",
            "group.id",
            "enable.auto.commit",
            "enable.auto.offset.store",
            "enable.partition.eof",
            "isolation.level",
            "auto.offset.reset",
        ];
        c.rule(
            !props.keys().any(|p| is_sensitive_property(p)),
            kp,
            rules::KAFKA_PROPERTIES_NO_SECRETS,
        );
        c.rule(
            !props.keys().any(|p| MANAGED.contains(&p.as_str())),
            kp,
            rules::KAFKA_PROPERTIES_NOT_MANAGED,
        );
        let cooperative = props
            .get("partition.assignment.strategy")
            .is_some_and(|s| s.contains("cooperative-sticky"));
        let incremental = props.get("group.protocol").is_some_and(|p| p != "classic");
        c.rule(
            !cooperative && !incremental,
            kp,
            rules::KAFKA_EAGER_REBALANCE,
        );
    }
    if let Some(sec) = &k.security {
        let sp = format!("{kp}.security");
        let sasl_proto = matches!(
            sec.protocol,
            SecurityProtocol::SaslPlaintext | SecurityProtocol::SaslSsl
        );
        let tls_proto = matches!(
            sec.protocol,
            SecurityProtocol::Ssl | SecurityProtocol::SaslSsl
        );
        c.rule(
            !sasl_proto || sec.sasl.is_some(),
            &sp,
            rules::SECURITY_SASL_NEEDS_CONFIG,
        );
        c.rule(
            sec.sasl.is_none() || sasl_proto,
            &sp,
            rules::SECURITY_SASL_NEEDS_PROTOCOL,
        );
        c.rule(
            sec.tls.is_none() || tls_proto,
            &sp,
            rules::SECURITY_TLS_NEEDS_PROTOCOL,
        );
    }

    // format
    let f = &spec.format;
    c.rule(f.count() == 1, "spec.format", rules::FORMAT_EXACTLY_ONE);
    if let Some(a) = &f.avro {
        avro_format(&mut c, a);
    }
    if let Some(j) = &f.json {
        let jp = "spec.format.json";
        c.rule(
            j.encoding != JsonEncoding::Confluent || j.schema_registry.is_some(),
            jp,
            rules::JSON_CONFLUENT_NEEDS_REGISTRY,
        );
        c.rule(
            j.schema.registry.is_none() || j.schema_registry.is_some(),
            jp,
            rules::JSON_SCHEMA_REGISTRY_NEEDS_REGISTRY,
        );
        if let Some(reg) = &j.schema_registry {
            registry(&mut c, &format!("{jp}.schemaRegistry"), reg);
        }
        reader_schema(&mut c, &format!("{jp}.schema"), &j.schema, true);
    }
    if let Some(p) = &f.protobuf {
        protobuf_format(&mut c, p);
    }

    // transform
    if let Some(t) = &spec.transform {
        if let Some(sql) = &t.sql {
            c.non_empty("spec.transform.sql", sql);
        }
        let mut seen = std::collections::BTreeSet::new();
        for (i, m) in t.metadata_columns.iter().enumerate() {
            if !seen.insert(*m) {
                c.fail(
                    format!("spec.transform.metadataColumns[{i}]"),
                    "duplicate metadata column",
                );
            }
        }
    }

    // sink
    c.rule(
        spec.sink.delta.is_some() != spec.sink.parquet.is_some(),
        "spec.sink",
        rules::SINK_EXACTLY_ONE,
    );
    if let Some(d) = &spec.sink.delta {
        let dp = "spec.sink.delta";
        c.uri(&format!("{dp}.uri"), &d.uri);
        c.rule(
            d.mode != DeltaMode::Merge || d.merge.is_some(),
            dp,
            rules::DELTA_MERGE_NEEDS_KEYS,
        );
        c.rule(
            d.merge.is_none() || d.mode == DeltaMode::Merge,
            dp,
            rules::DELTA_MERGE_NEEDS_MODE,
        );
        if let Some(m) = &d.merge
            && m.keys.is_empty()
        {
            c.fail(
                format!("{dp}.merge.keys"),
                "must list at least one key column",
            );
        }
        for (i, p) in d.partition_by.iter().enumerate() {
            c.non_empty(&format!("{dp}.partitionBy[{i}]"), p);
        }
    }
    if let Some(p) = &spec.sink.parquet {
        c.uri("spec.sink.parquet.uri", &p.uri);
        for (i, col) in p.partition_by.iter().enumerate() {
            c.non_empty(&format!("spec.sink.parquet.partitionBy[{i}]"), col);
        }
    }
    c.uri("spec.checkpoint.uri", &spec.checkpoint.uri);
    let sink_uris = [
        spec.sink.delta.as_ref().map(|d| &d.uri),
        spec.sink.parquet.as_ref().map(|p| &p.uri),
    ];
    c.rule(
        !sink_uris.contains(&Some(&spec.checkpoint.uri)),
        s,
        rules::CHECKPOINT_NOT_SINK,
    );

    // storage
    if let Some(st) = &spec.storage {
        let endpoint_http = st
            .endpoint
            .as_deref()
            .is_some_and(|e| e.starts_with("http://"));
        c.rule(
            !endpoint_http || st.allow_http,
            "spec.storage",
            rules::STORAGE_HTTP_NEEDS_ALLOW,
        );
        if let Some(opts) = &st.options {
            let secretish = |k: &str| {
                let k = k.to_ascii_lowercase();
                ["secret", "password", "token", "access_key"]
                    .iter()
                    .any(|w| k.contains(w))
            };
            c.rule(
                !opts.keys().any(|k| secretish(k)),
                "spec.storage",
                rules::STORAGE_OPTIONS_NO_SECRETS,
            );
        }
    }

    // trigger, event time
    c.rule(
        spec.source.kafka.ending_offsets.is_none()
            || spec.trigger.as_ref().is_none_or(|t| t.interval.is_none()),
        "spec",
        rules::BOUNDED_NO_INTERVAL,
    );
    if let Some(t) = &spec.trigger {
        c.rule(
            !(t.interval.is_some() && t.is_available_now()),
            "spec.trigger",
            rules::TRIGGER_EXCLUSIVE,
        );
        if let Some(i) = &t.interval {
            c.duration("spec.trigger.interval", i);
            c.rule(
                parse_duration(i).is_none_or(|d| !d.is_zero()),
                "spec.trigger",
                rules::TRIGGER_INTERVAL_POSITIVE,
            );
        }
    }
    if let Some(e) = &spec.event_time {
        c.non_empty("spec.eventTime.column", &e.column);
        c.duration("spec.eventTime.allowedLateness", &e.allowed_lateness);
        c.rule(
            parse_duration(&e.allowed_lateness).is_none_or(|d| d <= MAX_ALLOWED_LATENESS),
            "spec.eventTime",
            rules::EVENT_TIME_LATENESS_BOUNDED,
        );
    }

    // errors
    if let Some(e) = &spec.errors {
        c.rule(
            e.on_bad_record != OnBadRecord::DeadLetter || e.dead_letter.is_some(),
            "spec.errors",
            rules::ERRORS_DEAD_LETTER_NEEDS_DESTINATION,
        );
        if let Some(d) = &e.dead_letter {
            c.rule(
                d.kafka.is_some() != d.delta.is_some(),
                "spec.errors.deadLetter",
                rules::DEAD_LETTER_EXACTLY_ONE,
            );
            if let Some(dd) = &d.delta {
                c.uri("spec.errors.deadLetter.delta.uri", &dd.uri);
            }
        }
    }

    // maintenance
    if let Some(m) = &spec.maintenance {
        if let Some(v) = &m.vacuum {
            let vp = "spec.maintenance.vacuum";
            c.duration(&format!("{vp}.retention"), &v.retention);
            let week = Duration::from_secs(168 * 3600);
            let long_enough = parse_duration(&v.retention).is_none_or(|d| d >= week);
            c.rule(
                long_enough || v.allow_short_retention,
                vp,
                rules::VACUUM_RETENTION_MINIMUM,
            );
            if v.schedule.split_whitespace().count() != 5 {
                c.fail(format!("{vp}.schedule"), "must be a 5-field cron schedule");
            }
        }
        if let Some(o) = &m.optimize
            && o.schedule.split_whitespace().count() != 5
        {
            c.fail(
                "spec.maintenance.optimize.schedule",
                "must be a 5-field cron schedule",
            );
        }
    }

    if c.0.is_empty() {
        Ok(())
    } else {
        Err(Problems(c.0))
    }
}

fn avro_format(c: &mut Check, a: &AvroFormat) {
    let ap = "spec.format.avro";
    c.rule(
        a.encoding != AvroEncoding::Raw || a.writer_schema.is_some(),
        ap,
        rules::AVRO_RAW_NEEDS_WRITER,
    );
    c.rule(
        a.encoding != AvroEncoding::Confluent || a.schema_registry.is_some(),
        ap,
        rules::AVRO_CONFLUENT_NEEDS_REGISTRY,
    );
    c.rule(
        a.encoding != AvroEncoding::Confluent || a.writer_schema.is_none(),
        ap,
        rules::AVRO_CONFLUENT_NO_WRITER,
    );
    c.rule(
        a.reader_schema
            .as_ref()
            .is_none_or(|r| r.registry.is_none())
            || a.schema_registry.is_some(),
        ap,
        rules::AVRO_READER_REGISTRY_NEEDS_REGISTRY,
    );
    c.rule(
        a.record_names.is_empty() || a.encoding == AvroEncoding::Confluent,
        ap,
        rules::AVRO_RECORD_NAMES_NEED_CONFLUENT,
    );
    if let Some(reg) = &a.schema_registry {
        registry(c, &format!("{ap}.schemaRegistry"), reg);
    }
    if let Some(w) = &a.writer_schema {
        schema_source(c, &format!("{ap}.writerSchema"), w);
    }
    if let Some(r) = &a.reader_schema {
        reader_schema(c, &format!("{ap}.readerSchema"), r, true);
    }
}

fn registry(c: &mut Check, rp: &str, reg: &SchemaRegistrySpec) {
    if !(reg.url.starts_with("http://") || reg.url.starts_with("https://")) {
        c.fail(format!("{rp}.url"), "must be an http:// or https:// url");
    }
    c.rule(
        userinfo_range(&reg.url).is_none(),
        rp,
        rules::REGISTRY_URL_NO_USERINFO,
    );
    c.duration(&format!("{rp}.timeout"), &reg.timeout);
}

fn protobuf_format(c: &mut Check, p: &ProtobufFormat) {
    let pp = "spec.format.protobuf";
    c.rule(
        p.schema.is_some() != p.descriptor_set.is_some(),
        pp,
        rules::PROTOBUF_SCHEMA_EXACTLY_ONE,
    );
    c.rule(
        p.encoding != ProtobufEncoding::Confluent || p.schema_registry.is_some(),
        pp,
        rules::PROTOBUF_CONFLUENT_NEEDS_REGISTRY,
    );
    c.rule(
        p.schema.as_ref().is_none_or(|s| s.registry.is_none()) || p.schema_registry.is_some(),
        pp,
        rules::PROTOBUF_SCHEMA_REGISTRY_NEEDS_REGISTRY,
    );
    let name = p.message_type.strip_prefix('.').unwrap_or(&p.message_type);
    let ident = |s: &str| {
        s.chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    };
    if !name.split('.').all(ident) {
        c.fail(
            format!("{pp}.messageType"),
            "must be a message's full name, e.g. shop.v1.Order",
        );
    }
    if let Some(reg) = &p.schema_registry {
        registry(c, &format!("{pp}.schemaRegistry"), reg);
    }
    if let Some(s) = &p.schema {
        reader_schema(c, &format!("{pp}.schema"), s, false);
    }
    if let Some(d) = &p.descriptor_set {
        c.rule(
            d.file.is_some() != d.config_map_key_ref.is_some(),
            &format!("{pp}.descriptorSet"),
            rules::DESCRIPTOR_SET_EXACTLY_ONE,
        );
    }
}

/// A row schema: exactly one source; inline text must be JSON when `json` (Avro, JSON
/// Schema), not for `.proto` source.
fn reader_schema(c: &mut Check, rp: &str, r: &ReaderSchema, json: bool) {
    let n = [
        r.registry.is_some(),
        r.inline.is_some(),
        r.file.is_some(),
        r.config_map_key_ref.is_some(),
    ]
    .iter()
    .filter(|x| **x)
    .count();
    c.rule(n == 1, rp, rules::READER_SCHEMA_EXACTLY_ONE);
    if let Some(text) = &r.inline
        && json
        && serde_json::from_str::<serde_json::Value>(text).is_err()
    {
        c.fail(
            format!("{rp}.inline"),
            "is not valid JSON (an Avro schema or JSON Schema is JSON)",
        );
    }
    if let Some(v) = r.registry.as_ref().and_then(|g| g.version.as_deref())
        && v != "latest"
        && v.parse::<u32>().is_err()
    {
        c.fail(
            format!("{rp}.registry.version"),
            "must be latest or a version number",
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_addresses_with_bare_ipv6_hosts() {
        for (s, want) in [
            ("0.0.0.0:8080", Some("0.0.0.0:8080")),
            ("127.0.0.12:8080", Some("127.0.0.12:8080")),
            ("fd00::7:8080", Some("[fd00::7]:8080")),
            ("[fd00::7]:8080", Some("[fd00::7]:8080")),
            ("$(POD_IP):8080", None),
            ("localhost", None),
        ] {
            assert_eq!(
                parse_socket_addr(s).map(|a| a.to_string()).as_deref(),
                want,
                "{s}"
            );
        }
    }

    #[test]
    fn rfc3339_times_with_an_offset() {
        for ok in [
            "2025-01-31T12:00:00Z",
            "2025-01-31T12:00:00.250Z",
            "2025-01-31T12:00:00+01:00",
            "2025-01-31T12:00:00.5-05:30",
        ] {
            assert!(rfc3339(ok), "{ok}");
        }
        for bad in [
            "yesterday",
            "2025-01-31T12:00:00",
            "2025-01-31T12:00Z",
            "2025-13-31T12:00:00Z",
            "2025-01-31T12:00:00.Z",
            "2025-01-31T12:00:00+0100",
            "2025-01-31t12:00:00Z",
            "2025-01-31 12:00:00Z",
            "2025-01-31T12:00:00z",
            "2025-02-30T12:00:00Z",
            "2025-01-31T12:00:00Z[Europe/Paris]",
        ] {
            assert!(!rfc3339(bad), "{bad}");
        }
    }

    #[test]
    fn uri_schemes() {
        for ok in [
            "s3://b/t",
            "s3a://b",
            "file:///t",
            "memory:///",
            "t/x",
            "/a:b/c",
        ] {
            assert!(uri_scheme_supported(ok), "{ok}");
        }
        for bad in ["gs://b/t", "s3:///t", "s3://", "hdfs://nn/c", "x/s3://b"] {
            assert!(!uri_scheme_supported(bad), "{bad}");
        }
    }

    #[test]
    fn durations() {
        for (s, secs) in [
            ("10s", 10.0),
            ("1h30m", 5400.0),
            ("250ms", 0.25),
            ("1.5h", 5400.0),
            ("0", 0.0),
            ("120h", 432000.0),
        ] {
            assert_eq!(
                parse_duration(s),
                Some(Duration::from_secs_f64(secs)),
                "{s}"
            );
        }
        for s in ["", "10", "5d", "s", "1h x", "-1s"] {
            assert_eq!(parse_duration(s), None, "{s}");
        }
    }

    #[test]
    fn urls_lose_their_userinfo() {
        for (url, want) in [
            (
                "https://user:pw@r.example:8081/x",
                "https://***@r.example:8081/x",
            ),
            ("http://user@r:8081", "http://***@r:8081"),
            ("http://a:b@c@r:8081/p?q=1", "http://***@r:8081/p?q=1"),
            ("http://r:8081/path@v1", "http://r:8081/path@v1"),
            ("http://r:8081?u=a@b", "http://r:8081?u=a@b"),
            ("not a url", "not a url"),
        ] {
            assert_eq!(redact_url(url), want, "{url}");
            assert_eq!(userinfo_range(url).is_some(), want.contains("***"), "{url}");
        }
    }

    #[test]
    fn sensitive_properties_by_pattern_and_the_crd_rule_lists_the_same_words() {
        for key in [
            "sasl.password",
            "sasl.oauthbearer.config",
            "sasl.oauthbearer.client.secret",
            "sasl.oauthbearer.assertion.private.key.passphrase",
            "sasl.oauthbearer.assertion.private.key.file",
            "SSL.Key.Password",
            "ssl.keystore.password",
            "ssl.certificate.pem",
            "ssl_key",
            "sasl.jaas.config",
        ] {
            assert!(is_sensitive_property(key), "{key}");
        }
        for key in [
            "fetch.max.bytes",
            "ssl.ca.location",
            "client.rack",
            "sasl.mechanism",
            "sasl.oauthbearer.token.endpoint.url",
        ] {
            assert!(!is_sensitive_property(key), "{key}");
        }
        let cel = rules::KAFKA_PROPERTIES_NO_SECRETS.rule;
        let words: Vec<&str> = cel
            .split("contains('")
            .skip(1)
            .filter_map(|w| w.split('\'').next())
            .collect();
        assert_eq!(words, SENSITIVE_PROPERTY_WORDS);
    }
}
