//! I/O: Confluent Schema Registry client — schemas by id (cached), subject versions,
//! registration; basic auth from secrets; timeouts; retries with backoff on 5xx and
//! connection errors. An unknown id is a bad record; an unreachable registry is an outage.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use serde::Deserialize;
use tracing::warn;

use crate::secrets::Secret;

/// Registry errors, classified for the caller's policy.
#[derive(Debug, thiserror::Error, strum::IntoStaticStr)]
pub enum RegistryError {
    /// The id or subject version does not exist (404): the record is bad, not the registry.
    #[error("schema {what} not found in the registry")]
    NotFound {
        /// What was asked for, e.g. `id 42` or `movie-ratings-value version latest`.
        what: String,
    },
    /// The registry could not be reached or answered 5xx, after retries: an outage.
    #[error("schema registry unavailable at {url}: {message}")]
    Unavailable {
        /// Base URL.
        url: String,
        /// The last failure.
        message: String,
    },
    /// The registry refused the credentials (401/403).
    #[error("schema registry at {url} refused the credentials (http {status})")]
    Unauthorized {
        /// Base URL.
        url: String,
        /// HTTP status.
        status: u16,
    },
    /// Another 4xx: the request itself is wrong (e.g. an invalid schema on registration).
    #[error("schema registry rejected the request (http {status}): {message}")]
    Rejected {
        /// HTTP status.
        status: u16,
        /// The registry's message.
        message: String,
    },
    /// The registry's answer is larger than [`MAX_RESPONSE_BYTES`]: treated like a bad
    /// record for the id that asked, never buffered whole.
    #[error("schema registry answer for {what} exceeds {limit} bytes")]
    Oversized {
        /// What was asked for.
        what: String,
        /// The limit, in bytes.
        limit: usize,
    },
    /// The client could not be built.
    #[error("invalid schema registry client settings: {0}")]
    Client(String),
}

impl RegistryError {
    /// Whether waiting and retrying may help (an outage), as opposed to a bad record or a
    /// configuration error.
    pub fn is_outage(&self) -> bool {
        matches!(self, Self::Unavailable { .. })
    }
}

/// A schema registered under a subject.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct SubjectSchema {
    /// Subject.
    pub subject: String,
    /// Global schema id.
    pub id: u32,
    /// Version within the subject.
    pub version: i32,
    /// The schema text.
    pub schema: String,
    /// Other subjects' schemas this one imports (Protobuf imports, Avro named types).
    #[serde(default)]
    pub references: Vec<SchemaReference>,
}

/// A reference from a schema to another subject's version (`name` is how it is imported).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct SchemaReference {
    /// The import name, e.g. `shop/common.proto`.
    pub name: String,
    /// The referenced subject.
    pub subject: String,
    /// Its version.
    pub version: i32,
}

#[derive(Deserialize)]
struct SchemaById {
    schema: String,
}

#[derive(Deserialize)]
struct Registered {
    id: u32,
}

#[derive(Deserialize, Default)]
struct ErrorBody {
    #[serde(default)]
    message: String,
}

/// The largest registry response read (a schema is kilobytes; this bounds a broken or
/// hostile server's answer).
pub const MAX_RESPONSE_BYTES: usize = 8 << 20;

/// How long an id the registry does not know is answered from memory as not found, so a
/// stream of records with unknown ids costs one request per id and minute, not one each.
pub const NEGATIVE_CACHE_TTL: Duration = Duration::from_secs(60);

/// How long a call keeps retrying an outage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryFor {
    /// Until it succeeds (the worker: lag grows, nothing is dead-lettered). The caller
    /// cancels by dropping the future.
    Ever,
    /// At most this long, then [`RegistryError::Unavailable`].
    AtMost(Duration),
}

/// A Confluent Schema Registry client with an id cache.
#[derive(Debug, Clone)]
pub struct RegistryClient {
    base: String,
    /// `base` with any userinfo replaced by `***`: what errors and logs show.
    shown: String,
    http: reqwest::Client,
    auth: Option<(Secret, Secret)>,
    cache: Arc<RwLock<HashMap<u32, Arc<str>>>>,
    /// Ids the registry answered 404 for, and when.
    missing: Arc<RwLock<HashMap<u32, Instant>>>,
    retry: RetryFor,
}

impl RegistryClient {
    /// A client for `url` with a per-request timeout and optional basic auth.
    pub fn new(
        url: &str,
        timeout: Duration,
        auth: Option<(Secret, Secret)>,
        retry: RetryFor,
    ) -> Result<Self, RegistryError> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .build()
            .map_err(|e| RegistryError::Client(e.to_string()))?;
        Ok(Self {
            base: url.trim_end_matches('/').to_string(),
            shown: spillway_api::validate::redact_url(url.trim_end_matches('/')),
            http,
            auth,
            cache: Arc::default(),
            missing: Arc::default(),
            retry,
        })
    }

    /// The writer schema with this id (cached after the first fetch).
    pub async fn schema_by_id(&self, id: u32) -> Result<Arc<str>, RegistryError> {
        if let Some(s) = self.cache.read().ok().and_then(|c| c.get(&id).cloned()) {
            return Ok(s);
        }
        let what = format!("id {id}");
        let known_missing = self
            .missing
            .read()
            .ok()
            .and_then(|m| m.get(&id).copied())
            .is_some_and(|at| at.elapsed() < NEGATIVE_CACHE_TTL);
        if known_missing {
            return Err(RegistryError::NotFound { what });
        }
        let answer = self
            .call::<SchemaById>(
                reqwest::Method::GET,
                &format!("/schemas/ids/{id}"),
                None,
                &what,
            )
            .await;
        if let (Err(RegistryError::NotFound { .. }), Ok(mut m)) = (&answer, self.missing.write()) {
            m.retain(|_, at| at.elapsed() < NEGATIVE_CACHE_TTL);
            m.insert(id, Instant::now());
        }
        let body = answer?;
        let schema: Arc<str> = body.schema.into();
        if let Ok(mut c) = self.cache.write() {
            c.insert(id, schema.clone());
        }
        Ok(schema)
    }

    /// A subject's schema at `version` (`latest` or a number).
    pub async fn subject_version(
        &self,
        subject: &str,
        version: &str,
    ) -> Result<SubjectSchema, RegistryError> {
        let s: SubjectSchema = self
            .call(
                reqwest::Method::GET,
                &format!("/subjects/{subject}/versions/{version}"),
                None,
                &format!("{subject} version {version}"),
            )
            .await?;
        if let Ok(mut c) = self.cache.write() {
            c.insert(s.id, s.schema.as_str().into());
        }
        Ok(s)
    }

    /// Registers a schema under a subject (idempotent in the registry) and returns its id.
    pub async fn register(&self, subject: &str, schema: &str) -> Result<u32, RegistryError> {
        self.register_typed(subject, schema, "AVRO").await
    }

    /// Registers a schema of a registry schema type (`AVRO`, `JSON`, `PROTOBUF`).
    pub async fn register_typed(
        &self,
        subject: &str,
        schema: &str,
        schema_type: &str,
    ) -> Result<u32, RegistryError> {
        let body = if schema_type == "AVRO" {
            serde_json::json!({ "schema": schema })
        } else {
            serde_json::json!({ "schema": schema, "schemaType": schema_type })
        };
        let r: Registered = self
            .call(
                reqwest::Method::POST,
                &format!("/subjects/{subject}/versions"),
                Some(body),
                subject,
            )
            .await?;
        if let Ok(mut c) = self.cache.write() {
            c.insert(r.id, schema.into());
        }
        Ok(r.id)
    }

    async fn call<T: serde::de::DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
        what: &str,
    ) -> Result<T, RegistryError> {
        let started = tokio::time::Instant::now();
        let mut backoff = Duration::from_millis(100);
        loop {
            let mut req = self
                .http
                .request(method.clone(), format!("{}{path}", self.base))
                .header(
                    "Accept",
                    "application/vnd.schemaregistry.v1+json, application/json",
                );
            if let Some((user, pass)) = &self.auth {
                req = req.basic_auth(user.expose(), Some(pass.expose()));
            }
            if let Some(b) = &body {
                req = req
                    .header("Content-Type", "application/vnd.schemaregistry.v1+json")
                    .json(b);
            }
            let outage = match req.send().await {
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    match status {
                        200..=299 => {
                            let body = bounded_body(resp, what).await?;
                            return serde_json::from_slice::<T>(&body).map_err(|e| {
                                RegistryError::Rejected {
                                    status,
                                    message: format!("unexpected response body: {e}"),
                                }
                            });
                        }
                        404 => {
                            return Err(RegistryError::NotFound {
                                what: what.to_string(),
                            });
                        }
                        401 | 403 => {
                            return Err(RegistryError::Unauthorized {
                                url: self.shown.clone(),
                                status,
                            });
                        }
                        408 | 429 | 500..=599 => format!("http {status}"),
                        _ => {
                            let e: ErrorBody = bounded_body(resp, what)
                                .await
                                .ok()
                                .and_then(|b| serde_json::from_slice(&b).ok())
                                .unwrap_or_default();
                            return Err(RegistryError::Rejected {
                                status,
                                message: e.message,
                            });
                        }
                    }
                }
                Err(e) => format!("request failed: {}", without_url(&e)),
            };
            let give_up = match self.retry {
                RetryFor::Ever => false,
                RetryFor::AtMost(d) => started.elapsed() + backoff > d,
            };
            if give_up {
                return Err(RegistryError::Unavailable {
                    url: self.shown.clone(),
                    message: outage,
                });
            }
            warn!(url = %self.shown, what, error = %outage, retry_in_ms = backoff.as_millis() as u64, "schema registry unavailable, retrying");
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    }
}

/// The response body, read chunk by chunk and refused once it exceeds
/// [`MAX_RESPONSE_BYTES`] (a transport failure mid-body is an outage).
async fn bounded_body(mut resp: reqwest::Response, what: &str) -> Result<Vec<u8>, RegistryError> {
    let oversized = || RegistryError::Oversized {
        what: what.to_string(),
        limit: MAX_RESPONSE_BYTES,
    };
    if resp
        .content_length()
        .is_some_and(|n| n > MAX_RESPONSE_BYTES as u64)
    {
        return Err(oversized());
    }
    let mut body = Vec::new();
    loop {
        match resp.chunk().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
                    return Err(oversized());
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(body),
            Err(e) => {
                return Err(RegistryError::Rejected {
                    status: resp.status().as_u16(),
                    message: format!("reading the response failed: {}", without_url(&e)),
                });
            }
        }
    }
}

/// A reqwest error's text without the URL (which may carry credentials in userinfo).
fn without_url(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connection refused or unreachable"
    } else {
        "transport error"
    };
    kind.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn errors_and_logs_never_show_the_urls_userinfo() {
        // Port 9 (discard) on loopback: refused at once.
        let client = RegistryClient::new(
            "http://user:hunter2@127.0.0.1:9/",
            Duration::from_millis(200),
            None,
            RetryFor::AtMost(Duration::from_millis(300)),
        )
        .unwrap();
        let err = client.schema_by_id(1).await.unwrap_err().to_string();
        assert!(!err.contains("hunter2") && !err.contains("user"), "{err}");
        assert!(err.contains("http://***@127.0.0.1:9"), "{err}");
    }

    fn client(url: &str) -> RegistryClient {
        RegistryClient::new(
            url,
            Duration::from_secs(5),
            None,
            RetryFor::AtMost(Duration::from_secs(5)),
        )
        .unwrap()
    }

    #[tokio::test]
    async fn an_unknown_id_is_asked_for_once_not_once_per_record() {
        let registry = spillway_e2e::registry::RegistryFixture::start()
            .await
            .unwrap();
        let c = client(&registry.url);
        for _ in 0..100 {
            let err = c.schema_by_id(4242).await.unwrap_err();
            assert!(matches!(err, RegistryError::NotFound { .. }), "{err}");
        }
        assert_eq!(registry.counts(), (1, 0), "one request for 100 lookups");
    }

    #[tokio::test]
    async fn an_oversized_answer_is_refused_not_buffered() {
        let registry = spillway_e2e::registry::RegistryFixture::start()
            .await
            .unwrap();
        let huge = format!("\"{}\"", "x".repeat(MAX_RESPONSE_BYTES + 1));
        let id = registry.register("huge-value", &huge);
        let err = client(&registry.url).schema_by_id(id).await.unwrap_err();
        assert!(matches!(err, RegistryError::Oversized { .. }), "{err}");
    }
}
