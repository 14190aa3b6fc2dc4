//! Against Apache Kafka: a record whose header name is not UTF-8 panics rdkafka's own header
//! accessor, and `spillway_kafka_headers::headers` reads it (name decoded lossily).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{BaseProducer, Producer};
use rdkafka::{Offset, TopicPartitionList};

#[test]
fn a_header_name_that_is_not_utf8_is_read_not_panicked_on() {
    let bootstrap = spillway_e2e::kafka_bootstrap();
    spillway_e2e::require("kafka", &bootstrap).unwrap();
    let topic = spillway_e2e::unique("raw-headers");
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .create()
        .unwrap();
    // Auto-created on first produce (the test broker allows it); retried until the
    // partition has a leader.
    spillway_kafka_headers::produce_with_raw_header(
        &producer,
        &topic,
        0,
        b"v",
        b"k\xff\xfe",
        b"hv",
    )
    .unwrap();
    producer.flush(Duration::from_secs(30)).unwrap();

    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("group.id", &topic)
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(&topic, 0, Offset::Beginning)
        .unwrap();
    consumer.assign(&tpl).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let msg = loop {
        assert!(Instant::now() < deadline, "no record within 30 s");
        if let Some(r) = consumer.poll(Duration::from_millis(500)) {
            break r.unwrap();
        }
    };
    assert_eq!(msg.payload(), Some(&b"v"[..]));
    // rdkafka's accessor unwraps the name's UTF-8 check: the crash this crate avoids.
    let raw = msg.headers().unwrap();
    assert!(std::panic::catch_unwind(|| raw.try_get(0).map(|h| h.key.len())).is_err());
    assert_eq!(
        spillway_kafka_headers::headers(&msg),
        vec![("k\u{fffd}\u{fffd}".to_string(), Some(b"hv".to_vec()))]
    );
}
