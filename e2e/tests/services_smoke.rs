//! Smoke test of the test services: a record goes through Apache Kafka with rdkafka (consumer
//! group, manual commit), and moto honours `If-None-Match: *` conditional puts.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use object_store::aws::AmazonS3Builder;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use spillway_e2e as support;

#[tokio::test]
async fn a_record_round_trips_through_kafka() {
    let bootstrap = support::kafka_bootstrap();
    support::require("kafka", &bootstrap).unwrap();
    let topic = support::unique("smoke");

    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .create()
        .unwrap();
    let created = admin
        .create_topics(
            &[NewTopic::new(&topic, 2, TopicReplication::Fixed(1))],
            &AdminOptions::new(),
        )
        .await
        .unwrap();
    assert!(created.iter().all(|r| r.is_ok()), "{created:?}");

    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("message.timeout.ms", "10000")
        .create()
        .unwrap();
    let delivered = producer
        .send(
            FutureRecord::to(&topic)
                .partition(1)
                .key("user-7")
                .payload(&[0u8, 1, 2, 3][..])
                .headers(OwnedHeaders::new().insert(Header {
                    key: "h",
                    value: Some("v"),
                })),
            Duration::from_secs(10),
        )
        .await
        .map_err(|(e, _)| e)
        .unwrap();
    assert_eq!(delivered.partition, 1);

    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("group.id", support::unique("smoke-group"))
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("max.poll.interval.ms", "10000")
        .set("session.timeout.ms", "10000")
        .create()
        .unwrap();
    consumer.subscribe(&[&topic]).unwrap();
    let msg = tokio::time::timeout(Duration::from_secs(60), consumer.recv())
        .await
        .expect("no record within 60s")
        .unwrap();
    assert_eq!(msg.topic(), topic);
    assert_eq!(msg.partition(), 1);
    assert_eq!(msg.offset(), delivered.offset);
    assert_eq!(msg.key(), Some(&b"user-7"[..]));
    assert_eq!(msg.payload(), Some(&[0u8, 1, 2, 3][..]));
    let h = msg.headers().unwrap().get(0);
    assert_eq!((h.key, h.value), ("h", Some(&b"v"[..])));
    consumer.commit_message(&msg, CommitMode::Sync).unwrap();
}

#[tokio::test]
async fn moto_rejects_a_second_create_only_put() {
    let endpoint = support::s3_endpoint();
    let addr = support::host_port(&endpoint);
    support::require("moto (s3)", &addr).unwrap();
    let bucket = support::s3_bucket();
    let store = AmazonS3Builder::new()
        .with_endpoint(&endpoint)
        .with_allow_http(true)
        .with_bucket_name(&bucket)
        .with_region("us-east-1")
        .with_access_key_id("test")
        .with_secret_access_key("test")
        .build()
        .unwrap();
    let key = Path::from(format!("{}/marker", support::unique("smoke")));
    let create = || PutOptions {
        mode: PutMode::Create,
        ..Default::default()
    };
    store
        .put_opts(&key, PutPayload::from_static(b"first"), create())
        .await
        .unwrap();
    let second = store
        .put_opts(&key, PutPayload::from_static(b"second"), create())
        .await;
    assert!(
        matches!(second, Err(object_store::Error::AlreadyExists { .. })),
        "{second:?}"
    );
    let body = store.get(&key).await.unwrap().bytes().await.unwrap();
    assert_eq!(&body[..], b"first");

    // The raw protocol: the second create-only put is answered 412 Precondition Failed.
    // (moto does not verify signatures, but answers anonymous requests differently.)
    let raw = format!("/{bucket}/{}/raw", support::unique("smoke"));
    let auth = "AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=0";
    let h = [("If-None-Match", "*"), ("Authorization", auth)];
    assert_eq!(
        support::http_status(&addr, "PUT", &raw, &h, b"one").unwrap(),
        200
    );
    assert_eq!(
        support::http_status(&addr, "PUT", &raw, &h, b"two").unwrap(),
        412
    );
}
