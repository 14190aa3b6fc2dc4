//! Every malformed record is classified with a typed reason, and the next good record
//! still decodes: one poison message never costs its neighbours.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use arrow_array::cast::AsArray;
use spillway_e2e::registry::RegistryFixture;
use spillway_worker::format::{ValueDecoder, registry_client};
use spillway_worker::secrets::MapSecrets;

const SCHEMA: &str = r#"{"type":"record","name":"R","fields":[{"name":"user","type":"string"},{"name":"note","type":["null","string"]},{"name":"amount","type":"double"}]}"#;

fn zz(out: &mut Vec<u8>, n: i64) {
    let mut z = ((n << 1) ^ (n >> 63)) as u64;
    while z >= 0x80 {
        out.push((z as u8) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

fn framed(id: u32, body: &[u8]) -> Vec<u8> {
    let mut v = vec![0];
    v.extend_from_slice(&id.to_be_bytes());
    v.extend_from_slice(body);
    v
}

fn good(user: &str) -> Vec<u8> {
    let mut b = Vec::new();
    zz(&mut b, user.len() as i64);
    b.extend_from_slice(user.as_bytes());
    zz(&mut b, 1); // union branch 1: string
    zz(&mut b, 2);
    b.extend_from_slice(b"hi");
    b.extend_from_slice(&1.5f64.to_le_bytes());
    b
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_malformed_kind_is_classified_and_the_next_record_decodes() {
    let registry = RegistryFixture::start().await.unwrap();
    let id = registry.register("bad-value", SCHEMA);
    let format: spillway_api::AvroFormat = serde_yaml::from_str(&format!(
        "{{encoding: confluent, schemaRegistry: {{url: '{}'}}}}",
        registry.url
    ))
    .unwrap();
    let client = registry_client(
        &spillway_api::FormatSpec::avro(format.clone()),
        &MapSecrets::default(),
    )
    .unwrap();
    let mut decoder: ValueDecoder<usize> =
        ValueDecoder::avro(&format, std::path::Path::new("."), client)
            .await
            .unwrap();

    let g = good("ok");
    let mut invalid_utf8 = Vec::new();
    zz(&mut invalid_utf8, 2);
    invalid_utf8.extend_from_slice(&[0xff, 0xfe]);
    invalid_utf8.extend_from_slice(&g[3..]);
    let mut negative = Vec::new();
    zz(&mut negative, -5);
    let mut huge = Vec::new();
    zz(&mut huge, 1 << 40);
    let mut bad_branch = Vec::new();
    zz(&mut bad_branch, 2);
    bad_branch.extend_from_slice(b"ok");
    zz(&mut bad_branch, 7);
    let mut trailing = g.clone();
    trailing.push(0);
    let truncated = g[..g.len() - 3].to_vec();

    let cases: Vec<(Option<Vec<u8>>, &str)> = vec![
        (None, "NullValue"),
        (Some(vec![0, 0, 1]), "Wire"),
        (
            Some(
                framed(id, &g)
                    .into_iter()
                    .enumerate()
                    .map(|(i, b)| if i == 0 { 1 } else { b })
                    .collect(),
            ),
            "Wire",
        ),
        (Some(framed(id + 100, &g)), "UnknownSchemaId"),
        (Some(framed(id, &truncated)), "Decode"),
        (Some(framed(id, &invalid_utf8)), "Decode"),
        (Some(framed(id, &negative)), "Decode"),
        (Some(framed(id, &huge)), "Decode"),
        (Some(framed(id, &bad_branch)), "Decode"),
        (Some(framed(id, &trailing)), "Decode"),
    ];
    let mut detail = Vec::new();
    for (i, (payload, want)) in cases.iter().enumerate() {
        let outcome = decoder.push(payload.as_deref(), i).await.unwrap();
        let bad = outcome.expect_err(&format!("case {i} should be a bad record"));
        assert_eq!(bad.reason(), *want, "case {i}: {bad}");
        detail.push(bad.to_string());
        // The next good record decodes.
        decoder
            .push(Some(&framed(id, &good(&format!("good-{i}")))), 1000 + i)
            .await
            .unwrap()
            .unwrap();
    }
    // Decode errors name what went wrong.
    let joined = detail.join("\n").to_lowercase();
    for word in [
        "utf-8",
        "length",
        "union",
        "trailing",
        "truncated",
        "magic",
        "shorter",
        "unknown schema id",
    ] {
        assert!(joined.contains(word), "no {word:?} in:\n{joined}");
    }
    let (batch, meta) = decoder.finish().unwrap().unwrap();
    assert_eq!(batch.num_rows(), cases.len());
    assert_eq!(meta, (0..cases.len()).map(|i| 1000 + i).collect::<Vec<_>>());
    let users = batch.column_by_name("user").unwrap().as_string::<i32>();
    for i in 0..cases.len() {
        assert_eq!(users.value(i), format!("good-{i}"));
    }
}
