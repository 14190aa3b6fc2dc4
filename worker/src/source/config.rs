//! Pure: builds the librdkafka consumer configuration from the spec and resolved secrets.

use std::collections::BTreeMap;

use spillway_api::{KafkaSource, SaslMechanism, SecurityProtocol};

use crate::secrets::{SecretError, SecretSource};

/// Fetch defaults measured on these machines (see DESIGN.md): librdkafka's defaults read
/// ≈180 k records/s; these reach the raw consume ceiling. Overridable in `properties`.
pub const FETCH_DEFAULTS: &[(&str, &str)] = &[
    ("fetch.queue.backoff.ms", "1"),
    ("queued.min.messages", "1000000"),
    ("fetch.min.bytes", "1"),
    ("fetch.wait.max.ms", "100"),
    ("session.timeout.ms", "30000"),
    ("max.poll.interval.ms", "300000"),
];

/// The consumer configuration, as librdkafka key/value pairs.
///
/// Spillway owns `group.id`, `bootstrap.servers` and offset handling: the sink is the
/// source of truth, offsets are stored and committed explicitly after each sink commit, and
/// `auto.offset.reset=earliest`: behind the explicit assign at the sink's offsets it acts
/// only when a fetch falls below the log start, and then lands at the first surviving
/// record, where the loop sees the gap and judges the loss by the low watermark (`latest`
/// would skip surviving records silently). It also owns `isolation.level=read_committed` (only committed records of a
/// transactional producer reach the sink; aborted ones and the markers are skipped) and
/// `enable.partition.eof=true` (the loop learns when it caught up, which ends an
/// `availableNow` run even when a transaction marker is the last offset).
pub fn consumer_config(
    kafka: &KafkaSource,
    group_id: &str,
    client_id: &str,
    secrets: &dyn SecretSource,
) -> Result<BTreeMap<String, String>, SecretError> {
    let mut c = BTreeMap::new();
    for (k, v) in FETCH_DEFAULTS {
        c.insert((*k).to_string(), (*v).to_string());
    }
    if let Some(props) = &kafka.properties {
        c.extend(props.clone());
    }
    c.insert("bootstrap.servers".into(), kafka.bootstrap_servers.clone());
    c.insert("group.id".into(), group_id.to_string());
    c.insert("client.id".into(), client_id.to_string());
    c.insert("enable.auto.commit".into(), "false".into());
    c.insert("enable.auto.offset.store".into(), "false".into());
    c.insert("isolation.level".into(), "read_committed".into());
    c.insert("enable.partition.eof".into(), "true".into());
    c.insert("auto.offset.reset".into(), "earliest".into());
    security(kafka, secrets, &mut c)?;
    Ok(c)
}

/// Adds `security.protocol`, SASL and TLS settings from secret references.
pub fn security(
    kafka: &KafkaSource,
    secrets: &dyn SecretSource,
    c: &mut BTreeMap<String, String>,
) -> Result<(), SecretError> {
    let Some(sec) = &kafka.security else {
        return Ok(());
    };
    let protocol = match sec.protocol {
        SecurityProtocol::Plaintext => "plaintext",
        SecurityProtocol::Ssl => "ssl",
        SecurityProtocol::SaslPlaintext => "sasl_plaintext",
        SecurityProtocol::SaslSsl => "sasl_ssl",
    };
    c.insert("security.protocol".into(), protocol.into());
    if let Some(sasl) = &sec.sasl {
        let mechanism = match sasl.mechanism {
            SaslMechanism::Plain => "PLAIN",
            SaslMechanism::ScramSha256 => "SCRAM-SHA-256",
            SaslMechanism::ScramSha512 => "SCRAM-SHA-512",
        };
        c.insert("sasl.mechanism".into(), mechanism.into());
        c.insert(
            "sasl.username".into(),
            secrets.resolve(&sasl.username_secret_ref)?.expose().into(),
        );
        c.insert(
            "sasl.password".into(),
            secrets.resolve(&sasl.password_secret_ref)?.expose().into(),
        );
    }
    if let Some(tls) = &sec.tls {
        if let Some(r) = &tls.ca_secret_ref {
            c.insert("ssl.ca.pem".into(), secrets.resolve(r)?.expose().into());
        }
        if let Some(r) = &tls.cert_secret_ref {
            c.insert(
                "ssl.certificate.pem".into(),
                secrets.resolve(r)?.expose().into(),
            );
        }
        if let Some(r) = &tls.key_secret_ref {
            c.insert("ssl.key.pem".into(), secrets.resolve(r)?.expose().into());
        }
    }
    Ok(())
}

/// The configuration as it may be logged: every key, but the value of a key that may
/// carry a credential ([`spillway_api::validate::is_sensitive_property`]: passwords, PEM
/// keys, `sasl.oauthbearer.config`, …) replaced by `<redacted>`.
pub fn loggable(config: &BTreeMap<String, String>) -> BTreeMap<&str, &str> {
    config
        .iter()
        .map(|(k, v)| {
            let shown = if spillway_api::validate::is_sensitive_property(k) {
                "<redacted>"
            } else {
                v.as_str()
            };
            (k.as_str(), shown)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secrets::MapSecrets;

    fn kafka(yaml: &str) -> KafkaSource {
        serde_yaml::from_str(yaml).unwrap()
    }

    #[test]
    fn managed_keys_win_and_defaults_apply() {
        let k = kafka(
            "{bootstrapServers: 'b:9092', topics: [t], properties: {fetch.queue.backoff.ms: '5', fetch.max.bytes: '1000'}}",
        );
        let c = consumer_config(&k, "g", "c", &MapSecrets::default()).unwrap();
        assert_eq!(c["bootstrap.servers"], "b:9092");
        assert_eq!(c["group.id"], "g");
        assert_eq!(c["enable.auto.commit"], "false");
        assert_eq!(c["enable.auto.offset.store"], "false");
        assert_eq!(c["isolation.level"], "read_committed");
        assert_eq!(c["enable.partition.eof"], "true");
        assert_eq!(c["fetch.queue.backoff.ms"], "5", "user override kept");
        assert_eq!(c["fetch.max.bytes"], "1000");
        assert_eq!(c["queued.min.messages"], "1000000");
    }

    #[test]
    fn sasl_and_tls_from_secrets_and_never_logged() {
        let k = kafka(
            "{bootstrapServers: b, topics: [t], security: {protocol: SASL_SSL, \
             sasl: {mechanism: SCRAM-SHA-512, usernameSecretRef: {name: k, key: user}, passwordSecretRef: {name: k, key: pass}}, \
             tls: {caSecretRef: {name: k, key: ca}}}}",
        );
        let secrets = MapSecrets(
            [
                ("SPILLWAY_SECRET_K_USER", "alice"),
                ("SPILLWAY_SECRET_K_PASS", "s3cret"),
                ("SPILLWAY_SECRET_K_CA", "PEM"),
            ]
            .into_iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect(),
        );
        let c = consumer_config(&k, "g", "c", &secrets).unwrap();
        assert_eq!(c["security.protocol"], "sasl_ssl");
        assert_eq!(c["sasl.mechanism"], "SCRAM-SHA-512");
        assert_eq!(c["sasl.password"], "s3cret");
        assert_eq!(c["ssl.ca.pem"], "PEM");
        let logged = format!("{:?}", loggable(&c));
        assert!(!logged.contains("s3cret") && !logged.contains("alice") && !logged.contains("PEM"));
        let missing = consumer_config(&k, "g", "c", &MapSecrets::default()).unwrap_err();
        assert!(missing.to_string().contains("SPILLWAY_SECRET_K_USER"));
    }

    #[test]
    fn values_of_keys_that_may_carry_credentials_are_not_logged() {
        let c: BTreeMap<String, String> = [
            ("sasl.oauthbearer.config", "clientSecret=topsecret"),
            ("sasl.oauthbearer.assertion.private.key.passphrase", "hush"),
            ("fetch.max.bytes", "1000"),
        ]
        .into_iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
        let logged = format!("{:?}", loggable(&c));
        assert!(
            !logged.contains("topsecret") && !logged.contains("hush"),
            "{logged}"
        );
        assert!(logged.contains("sasl.oauthbearer.config") && logged.contains("\"1000\""));
    }
}
