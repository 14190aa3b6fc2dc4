//! The invalid-manifest table, shared by the tests that check each case is refused at the
//! same field path: `operator/api/tests/validation_table.rs` (Rust `validate` and the CRD's
//! CEL rules evaluated client-side) and the cluster e2e (`e2e/tests/cluster/validation.rs`:
//! `spillway validate` and the real API server). Included by path by both.

#![allow(dead_code)]

use serde_json::{Value, json};

/// One invalid manifest: [`base`] changed by `mutate`, refused at `path`.
#[derive(Debug, Clone, Copy)]
pub struct Case {
    /// What is wrong.
    pub name: &'static str,
    /// Turns the valid [`base`] into the invalid manifest.
    pub mutate: fn(&mut Value),
    /// The field path every checker reports the problem at.
    pub path: &'static str,
}

impl Case {
    /// The invalid manifest.
    pub fn manifest(&self) -> Value {
        let mut v = base();
        (self.mutate)(&mut v);
        v
    }
}

/// A valid pipeline (Confluent Avro into Delta) every case starts from.
pub fn base() -> Value {
    json!({
        "apiVersion": "spillway.dev/v1alpha1",
        "kind": "StreamingPipeline",
        "metadata": {"name": "p", "namespace": "ns"},
        "spec": {
            "source": {"kafka": {"bootstrapServers": "k:9092", "topics": ["t"]}},
            "format": {"avro": {"encoding": "confluent", "schemaRegistry": {"url": "http://r:8081"}}},
            "sink": {"delta": {"uri": "s3://lake/t"}},
            "checkpoint": {"uri": "s3://lake/c"},
            "storage": {"region": "eu-west-1"}
        }
    })
}

/// JSON values with an inline row schema instead of Avro.
fn json_rows(v: &mut Value) {
    v["spec"]["format"] = json!({"json": {"schema": {"inline": "{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"integer\"}}}"}}});
}

/// Raw Protobuf values with a descriptor set file instead of Avro.
fn proto_rows(v: &mut Value) {
    v["spec"]["format"] = json!({"protobuf": {"encoding": "raw", "messageType": "shop.v1.Order", "descriptorSet": {"file": "shop.pb"}}});
}

fn raw_avro(v: &mut Value) {
    v["spec"]["format"]["avro"] =
        json!({"encoding": "raw", "writerSchema": {"inline": "\"long\""}});
}

/// Cases of the CRD's CEL rules (`spillway_api::rules`): every checker reports the rule's
/// own message.
pub const CEL_RULES: &[Case] = &[
    Case {
        name: "both sinks",
        mutate: |v| v["spec"]["sink"]["parquet"] = json!({"uri": "/tmp/p"}),
        path: "spec.sink",
    },
    Case {
        name: "no sink",
        mutate: |v| v["spec"]["sink"] = json!({}),
        path: "spec.sink",
    },
    Case {
        name: "topics and pattern",
        mutate: |v| v["spec"]["source"]["kafka"]["topicPattern"] = json!("t.*"),
        path: "spec.source.kafka",
    },
    Case {
        name: "neither topics nor pattern",
        mutate: |v| {
            v["spec"]["source"]["kafka"]
                .as_object_mut()
                .map(|o| o.remove("topics"));
        },
        path: "spec.source.kafka",
    },
    Case {
        name: "raw without writer schema",
        mutate: |v| v["spec"]["format"]["avro"] = json!({"encoding": "raw"}),
        path: "spec.format.avro.writerSchema",
    },
    Case {
        name: "confluent without registry",
        mutate: |v| v["spec"]["format"]["avro"] = json!({"encoding": "confluent"}),
        path: "spec.format.avro.schemaRegistry",
    },
    Case {
        name: "confluent with writer schema",
        mutate: |v| v["spec"]["format"]["avro"]["writerSchema"] = json!({"inline": "\"long\""}),
        path: "spec.format.avro.writerSchema",
    },
    Case {
        name: "writer schema from two places",
        mutate: |v| {
            raw_avro(v);
            v["spec"]["format"]["avro"]["writerSchema"]["file"] = json!("a.avsc");
        },
        path: "spec.format.avro.writerSchema",
    },
    Case {
        name: "registry reader without registry",
        mutate: |v| {
            raw_avro(v);
            v["spec"]["format"]["avro"]["readerSchema"] =
                json!({"registry": {"version": "latest"}});
        },
        path: "spec.format.avro.readerSchema",
    },
    Case {
        name: "reader schema from two places",
        mutate: |v| {
            v["spec"]["format"]["avro"]["readerSchema"] =
                json!({"registry": {}, "inline": "\"long\""})
        },
        path: "spec.format.avro.readerSchema",
    },
    Case {
        name: "avro and json",
        mutate: |v| {
            v["spec"]["format"]["json"] = json!({"schema": {"inline": "{}"}});
        },
        path: "spec.format",
    },
    Case {
        name: "no format",
        mutate: |v| v["spec"]["format"] = json!({}),
        path: "spec.format",
    },
    Case {
        name: "record names with raw avro",
        mutate: |v| {
            raw_avro(v);
            v["spec"]["format"]["avro"]["recordNames"] = json!(["shop.OrderCreated"]);
        },
        path: "spec.format.avro.recordNames",
    },
    Case {
        name: "json and protobuf",
        mutate: |v| {
            json_rows(v);
            v["spec"]["format"]["protobuf"] =
                json!({"encoding": "raw", "messageType": "a.B", "descriptorSet": {"file": "d.pb"}});
        },
        path: "spec.format",
    },
    Case {
        name: "protobuf with neither schema nor descriptor set",
        mutate: |v| {
            proto_rows(v);
            v["spec"]["format"]["protobuf"]
                .as_object_mut()
                .unwrap()
                .remove("descriptorSet");
        },
        path: "spec.format.protobuf",
    },
    Case {
        name: "protobuf with both schema and descriptor set",
        mutate: |v| {
            proto_rows(v);
            v["spec"]["format"]["protobuf"]["schema"] = json!({"inline": "syntax = \"proto3\";"});
        },
        path: "spec.format.protobuf",
    },
    Case {
        name: "confluent protobuf without registry",
        mutate: |v| {
            proto_rows(v);
            v["spec"]["format"]["protobuf"]["encoding"] = json!("confluent");
        },
        path: "spec.format.protobuf.schemaRegistry",
    },
    Case {
        name: "protobuf schema from the registry without registry",
        mutate: |v| {
            proto_rows(v);
            let p = &mut v["spec"]["format"]["protobuf"];
            p.as_object_mut().unwrap().remove("descriptorSet");
            p["schema"] = json!({"registry": {"subject": "orders-value"}});
        },
        path: "spec.format.protobuf.schema",
    },
    Case {
        name: "descriptor set from two places",
        mutate: |v| {
            proto_rows(v);
            v["spec"]["format"]["protobuf"]["descriptorSet"]["configMapKeyRef"] =
                json!({"name": "protos", "key": "shop.pb"});
        },
        path: "spec.format.protobuf.descriptorSet",
    },
    Case {
        name: "confluent json without registry",
        mutate: |v| {
            json_rows(v);
            v["spec"]["format"]["json"]["encoding"] = json!("confluent");
        },
        path: "spec.format.json.schemaRegistry",
    },
    Case {
        name: "json schema from the registry without registry",
        mutate: |v| {
            json_rows(v);
            v["spec"]["format"]["json"]["schema"] =
                json!({"registry": {"subject": "orders-value"}});
        },
        path: "spec.format.json.schema",
    },
    Case {
        name: "json schema from two places",
        mutate: |v| {
            json_rows(v);
            v["spec"]["format"]["json"]["schema"]["file"] = json!("order.json");
        },
        path: "spec.format.json.schema",
    },
    Case {
        name: "merge without keys",
        mutate: |v| v["spec"]["sink"]["delta"]["mode"] = json!("merge"),
        path: "spec.sink.delta.merge",
    },
    Case {
        name: "merge settings in append mode",
        mutate: |v| v["spec"]["sink"]["delta"]["merge"] = json!({"keys": ["id"]}),
        path: "spec.sink.delta.mode",
    },
    Case {
        name: "timestamp start without timestamp",
        mutate: |v| v["spec"]["source"]["kafka"]["startingOffsets"] = json!("timestamp"),
        path: "spec.source.kafka.startingTimestamp",
    },
    Case {
        name: "offsets start without offsets",
        mutate: |v| v["spec"]["source"]["kafka"]["startingOffsets"] = json!("offsets"),
        path: "spec.source.kafka.startingPartitionOffsets",
    },
    Case {
        name: "timestamp end without timestamp",
        mutate: |v| v["spec"]["source"]["kafka"]["endingOffsets"] = json!("timestamp"),
        path: "spec.source.kafka.endingTimestamp",
    },
    Case {
        name: "offsets end without offsets",
        mutate: |v| v["spec"]["source"]["kafka"]["endingOffsets"] = json!("offsets"),
        path: "spec.source.kafka.endingPartitionOffsets",
    },
    Case {
        name: "bounded run ending before it starts",
        mutate: |v| {
            let k = &mut v["spec"]["source"]["kafka"];
            k["startingOffsets"] = json!("timestamp");
            k["startingTimestamp"] = json!("2025-02-01T00:00:00Z");
            k["endingOffsets"] = json!("timestamp");
            k["endingTimestamp"] = json!("2025-01-31T23:59:59+01:00");
        },
        path: "spec.source.kafka.endingTimestamp",
    },
    Case {
        name: "bounded run with an interval",
        mutate: |v| {
            v["spec"]["source"]["kafka"]["endingOffsets"] = json!("latest");
            v["spec"]["trigger"] = json!({"interval": "30s"});
        },
        path: "spec.trigger.interval",
    },
    Case {
        name: "sasl protocol without sasl",
        mutate: |v| v["spec"]["source"]["kafka"]["security"] = json!({"protocol": "SASL_SSL"}),
        path: "spec.source.kafka.security.sasl",
    },
    Case {
        name: "sasl with plaintext",
        mutate: |v| v["spec"]["source"]["kafka"]["security"] = json!({"protocol": "PLAINTEXT", "sasl": {"mechanism": "PLAIN", "usernameSecretRef": {"name": "s", "key": "u"}, "passwordSecretRef": {"name": "s", "key": "p"}}}),
        path: "spec.source.kafka.security.protocol",
    },
    Case {
        name: "tls without tls protocol",
        mutate: |v| v["spec"]["source"]["kafka"]["security"] = json!({"protocol": "PLAINTEXT", "tls": {"caSecretRef": {"name": "s", "key": "ca.crt"}}}),
        path: "spec.source.kafka.security.protocol",
    },
    Case {
        name: "oauthbearer config in properties",
        mutate: |v| {
            v["spec"]["source"]["kafka"]["properties"] =
                json!({"sasl.oauthbearer.config": "clientSecret=x"})
        },
        path: "spec.source.kafka.properties",
    },
    Case {
        name: "private key passphrase in properties",
        mutate: |v| {
            v["spec"]["source"]["kafka"]["properties"] =
                json!({"sasl.oauthbearer.assertion.private.key.passphrase": "x"})
        },
        path: "spec.source.kafka.properties",
    },
    Case {
        name: "credentials in the registry url",
        mutate: |v| {
            v["spec"]["format"]["avro"]["schemaRegistry"]["url"] =
                json!("https://user:pw@registry:8081")
        },
        path: "spec.format.avro.schemaRegistry.url",
    },
    Case {
        name: "zero trigger interval",
        mutate: |v| v["spec"]["trigger"] = json!({"interval": "0s"}),
        path: "spec.trigger.interval",
    },
    Case {
        name: "huge allowed lateness",
        mutate: |v| v["spec"]["eventTime"] = json!({"column": "ts", "allowedLateness": "1000000h"}),
        path: "spec.eventTime.allowedLateness",
    },
    Case {
        name: "isolation level in properties",
        mutate: |v| {
            v["spec"]["source"]["kafka"]["properties"] =
                json!({"isolation.level": "read_uncommitted"})
        },
        path: "spec.source.kafka.properties",
    },
    Case {
        name: "cooperative-sticky assignment",
        mutate: |v| {
            v["spec"]["source"]["kafka"]["properties"] =
                json!({"partition.assignment.strategy": "cooperative-sticky"})
        },
        path: "spec.source.kafka.properties",
    },
    Case {
        name: "cooperative-sticky among strategies",
        mutate: |v| {
            v["spec"]["source"]["kafka"]["properties"] =
                json!({"partition.assignment.strategy": "range,cooperative-sticky"})
        },
        path: "spec.source.kafka.properties",
    },
    Case {
        name: "the consumer group protocol",
        mutate: |v| {
            v["spec"]["source"]["kafka"]["properties"] = json!({"group.protocol": "consumer"})
        },
        path: "spec.source.kafka.properties",
    },
    Case {
        name: "password in properties",
        mutate: |v| {
            v["spec"]["source"]["kafka"]["properties"] = json!({"sasl.password": "hunter2"})
        },
        path: "spec.source.kafka.properties",
    },
    Case {
        name: "managed property",
        mutate: |v| {
            v["spec"]["source"]["kafka"]["properties"] = json!({"enable.auto.commit": "true"})
        },
        path: "spec.source.kafka.properties",
    },
    Case {
        name: "dead letter without destination",
        mutate: |v| v["spec"]["errors"] = json!({"onBadRecord": "deadLetter"}),
        path: "spec.errors.deadLetter",
    },
    Case {
        name: "dead letter to two places",
        mutate: |v| v["spec"]["errors"] = json!({"onBadRecord": "deadLetter", "deadLetter": {"kafka": {"topic": "dlq"}, "delta": {"uri": "s3://lake/dlq"}}}),
        path: "spec.errors.deadLetter",
    },
    Case {
        name: "interval and availableNow",
        mutate: |v| v["spec"]["trigger"] = json!({"interval": "5s", "availableNow": true}),
        path: "spec.trigger",
    },
    Case {
        name: "http endpoint not allowed",
        mutate: |v| v["spec"]["storage"]["endpoint"] = json!("http://127.0.0.1:9000"),
        path: "spec.storage.allowHttp",
    },
    Case {
        name: "secret in storage options",
        mutate: |v| v["spec"]["storage"]["options"] = json!({"aws_secret_access_key": "x"}),
        path: "spec.storage.options",
    },
    Case {
        name: "maintenance on parquet",
        mutate: |v| {
            v["spec"]["sink"] = json!({"parquet": {"uri": "s3://lake/p"}});
            v["spec"]["maintenance"] = json!({"optimize": {"schedule": "0 * * * *"}});
        },
        path: "spec.maintenance",
    },
    Case {
        name: "short vacuum retention",
        mutate: |v| {
            v["spec"]["maintenance"] =
                json!({"vacuum": {"schedule": "0 3 * * *", "retention": "24h"}})
        },
        path: "spec.maintenance.vacuum.retention",
    },
    Case {
        name: "unsupported table scheme",
        mutate: |v| v["spec"]["sink"]["delta"]["uri"] = json!("gs://bucket/t"),
        path: "spec.sink.delta.uri",
    },
    Case {
        name: "checkpoint is the table",
        mutate: |v| v["spec"]["checkpoint"]["uri"] = json!("s3://lake/t"),
        path: "spec.checkpoint.uri",
    },
    Case {
        name: "unsupported checkpoint scheme",
        mutate: |v| v["spec"]["checkpoint"]["uri"] = json!("hdfs://nn/c"),
        path: "spec.checkpoint.uri",
    },
    Case {
        name: "s3 uri without bucket",
        mutate: |v| v["spec"]["sink"]["delta"]["uri"] = json!("s3:///t"),
        path: "spec.sink.delta.uri",
    },
    Case {
        name: "unsupported dead-letter table scheme",
        mutate: |v| v["spec"]["errors"] = json!({"onBadRecord": "deadLetter", "deadLetter": {"delta": {"uri": "abfss://c@a/dlq"}}}),
        path: "spec.errors.deadLetter.delta.uri",
    },
];

/// Cases of the CRD's schema constraints (types, minimums, patterns, formats, list types)
/// and of rules whose message depends on the value: the same path everywhere, the message
/// in each checker's own words.
pub const SCHEMA: &[Case] = &[
    Case {
        name: "a protobuf message type that is not a full name",
        mutate: |v| {
            proto_rows(v);
            v["spec"]["format"]["protobuf"]["messageType"] = json!("shop/Order");
        },
        path: "spec.format.protobuf.messageType",
    },
    Case {
        name: "negative replicas",
        mutate: |v| v["spec"]["replicas"] = json!(-1),
        path: "spec.replicas",
    },
    Case {
        name: "interval in words",
        mutate: |v| v["spec"]["trigger"] = json!({"interval": "5 seconds"}),
        path: "spec.trigger.interval",
    },
    Case {
        name: "zero records per batch",
        mutate: |v| v["spec"]["source"]["kafka"]["maxRecordsPerBatch"] = json!(0),
        path: "spec.source.kafka.maxRecordsPerBatch",
    },
    Case {
        name: "a batch byte cap below 1 MiB",
        mutate: |v| v["spec"]["source"]["kafka"]["maxBytesPerBatch"] = json!(1000),
        path: "spec.source.kafka.maxBytesPerBatch",
    },
    Case {
        name: "a batch byte cap past 1 GiB",
        mutate: |v| v["spec"]["source"]["kafka"]["maxBytesPerBatch"] = json!(4_294_967_296_i64),
        path: "spec.source.kafka.maxBytesPerBatch",
    },
    Case {
        name: "starting timestamp in words",
        mutate: |v| {
            v["spec"]["source"]["kafka"]["startingOffsets"] = json!("timestamp");
            v["spec"]["source"]["kafka"]["startingTimestamp"] = json!("yesterday");
        },
        path: "spec.source.kafka.startingTimestamp",
    },
    Case {
        name: "starting timestamp without offset",
        mutate: |v| {
            v["spec"]["source"]["kafka"]["startingOffsets"] = json!("timestamp");
            v["spec"]["source"]["kafka"]["startingTimestamp"] = json!("2025-01-01T00:00:00");
        },
        path: "spec.source.kafka.startingTimestamp",
    },
    Case {
        name: "ending timestamp in words",
        mutate: |v| {
            v["spec"]["source"]["kafka"]["endingOffsets"] = json!("timestamp");
            v["spec"]["source"]["kafka"]["endingTimestamp"] = json!("tomorrow");
        },
        path: "spec.source.kafka.endingTimestamp",
    },
    Case {
        name: "empty topic list",
        mutate: |v| v["spec"]["source"]["kafka"]["topics"] = json!([]),
        path: "spec.source.kafka.topics",
    },
    Case {
        name: "invalid topic name",
        mutate: |v| v["spec"]["source"]["kafka"]["topics"] = json!(["orders", "bad topic!"]),
        path: "spec.source.kafka.topics[1]",
    },
    Case {
        name: "empty bootstrap servers",
        mutate: |v| v["spec"]["source"]["kafka"]["bootstrapServers"] = json!(""),
        path: "spec.source.kafka.bootstrapServers",
    },
    Case {
        name: "registry url without scheme",
        mutate: |v| v["spec"]["format"]["avro"]["schemaRegistry"]["url"] = json!("r:8081"),
        path: "spec.format.avro.schemaRegistry.url",
    },
    Case {
        name: "registry version in words",
        mutate: |v| {
            v["spec"]["format"]["avro"]["readerSchema"] = json!({"registry": {"version": "newest"}})
        },
        path: "spec.format.avro.readerSchema.registry.version",
    },
    Case {
        name: "duplicate metadata column",
        mutate: |v| {
            v["spec"]["transform"] = json!({"metadataColumns": ["offset", "partition", "offset"]})
        },
        path: "spec.transform.metadataColumns[2]",
    },
    Case {
        name: "merge without key columns",
        mutate: |v| {
            v["spec"]["sink"]["delta"]["mode"] = json!("merge");
            v["spec"]["sink"]["delta"]["merge"] = json!({"keys": []});
        },
        path: "spec.sink.delta.merge.keys",
    },
    Case {
        name: "six-field cron schedule",
        mutate: |v| v["spec"]["maintenance"] = json!({"optimize": {"schedule": "0 0 * * * *"}}),
        path: "spec.maintenance.optimize.schedule",
    },
    Case {
        name: "registry timeout in words",
        mutate: |v| v["spec"]["format"]["avro"]["schemaRegistry"]["timeout"] = json!("ten seconds"),
        path: "spec.format.avro.schemaRegistry.timeout",
    },
    Case {
        name: "json registry url without scheme",
        mutate: |v| {
            json_rows(v);
            v["spec"]["format"]["json"]["schemaRegistry"] = json!({"url": "r:8081"});
        },
        path: "spec.format.json.schemaRegistry.url",
    },
    Case {
        name: "lateness in words",
        mutate: |v| v["spec"]["eventTime"] = json!({"column": "ts", "allowedLateness": "a day"}),
        path: "spec.eventTime.allowedLateness",
    },
];
