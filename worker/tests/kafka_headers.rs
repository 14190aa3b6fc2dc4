//! `metadataColumns: [headers]` over records whose header name is not UTF-8 (rdkafka's own
//! header accessor panics on those, which crash-looped the worker): the run ends, every
//! record lands, and the name is decoded lossily (U+FFFD), as Spark's Kafka source does.
//! Against Apache Kafka, read back with Python `deltalake`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

use common::manifest::Manifest;
use spillway_e2e as support;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_names_that_are_not_utf8_are_read_not_crashed_on() {
    let bootstrap = support::kafka_bootstrap();
    support::require("kafka", &bootstrap).unwrap();
    let topic = support::unique("raw-header-names");
    spillway_worker::tools::produce::ensure_topic(&bootstrap, &topic, 1)
        .await
        .unwrap();
    let mut body = Vec::new();
    spillway_worker::tools::generate::HsuTestGenerator::new(7)
        .next_event()
        .encode(&mut body);
    let producer: BaseProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .create()
        .unwrap();
    let plain = |producer: &BaseProducer| {
        let headers = OwnedHeaders::new().insert(Header {
            key: "a",
            value: Some("1"),
        });
        producer
            .send(
                BaseRecord::<(), _>::to(&topic)
                    .payload(&body)
                    .partition(0)
                    .headers(headers),
            )
            .map_err(|(e, _)| e)
            .unwrap();
    };
    plain(&producer);
    spillway_kafka_headers::produce_with_raw_header(&producer, &topic, 0, &body, b"k\xff", b"v")
        .unwrap();
    plain(&producer);
    producer.flush(Duration::from_secs(30)).unwrap();

    let dir = std::env::temp_dir().join(support::unique("raw-header-names"));
    let text = Manifest::hsutest(&topic)
        .metadata_columns(&["offset", "headers"])
        .delta(dir.join("t"))
        .checkpoint(dir.join("c"))
        .available_now()
        .yaml();
    let summary = common::run_available_now(&text).await.unwrap();
    assert_eq!(summary.rows, 3);
    assert_eq!(summary.skipped, 0);
    let rows: Vec<(i64, Vec<(String, String)>)> = common::python_json(
        r#"
import json, os, sys
from deltalake import DeltaTable
t = DeltaTable(sys.argv[1]).to_pyarrow_table().sort_by("_offset").to_pylist()
print(json.dumps([[r["_offset"], [[k, v.decode()] for k, v in r["_headers"]]] for r in t]), flush=True)
os._exit(0)
"#,
        &[&dir.join("t").display().to_string()],
    );
    assert_eq!(
        rows,
        vec![
            (0, vec![("a".to_string(), "1".to_string())]),
            (1, vec![("k\u{fffd}".to_string(), "v".to_string())]),
            (2, vec![("a".to_string(), "1".to_string())]),
        ]
    );
}
