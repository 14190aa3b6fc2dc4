//! A Confluent Schema Registry fixture: the REST subset Spillway uses, in-process on a
//! loopback port, with fault injection (answer 503 to the next N requests, or for a while).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use axum::http::header::AUTHORIZATION;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};

#[derive(Default)]
struct Inner {
    schemas: Vec<String>,
    subjects: HashMap<String, Vec<u32>>,
    fail_next: u32,
    /// Every request before this moment is answered 503.
    down_until: Option<std::time::Instant>,
    requests: u64,
    failed: u64,
    /// `Authorization` header value every request must carry, when set.
    auth: Option<String>,
    unauthorized: u64,
}

type Shared = Arc<Mutex<Inner>>;

/// A running registry fixture; stops when dropped.
#[derive(Debug)]
pub struct RegistryFixture {
    /// Base URL, e.g. `http://127.0.0.1:41234`.
    pub url: String,
    state: Shared,
    task: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inner")
            .field("schemas", &self.schemas.len())
            .finish()
    }
}

impl Drop for RegistryFixture {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn unavailable(s: &mut Inner, headers: &HeaderMap) -> Option<Response> {
    s.requests += 1;
    if let Some(want) = &s.auth {
        let given = headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok());
        if given != Some(want.as_str()) {
            s.unauthorized += 1;
            return Some(
                (
                    StatusCode::UNAUTHORIZED,
                    Json(json!({"error_code": 40101, "message": "Unauthorized"})),
                )
                    .into_response(),
            );
        }
    }
    let down = s.down_until.is_some_and(|t| std::time::Instant::now() < t);
    if s.fail_next > 0 || down {
        s.fail_next = s.fail_next.saturating_sub(1);
        s.failed += 1;
        return Some(
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({"error_code": 50301, "message": "injected outage"})),
            )
                .into_response(),
        );
    }
    None
}

fn not_found(code: u32, message: &str) -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(json!({"error_code": code, "message": message})),
    )
        .into_response()
}

async fn by_id(State(st): State<Shared>, headers: HeaderMap, Path(id): Path<u32>) -> Response {
    let Ok(mut s) = st.lock() else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    if let Some(r) = unavailable(&mut s, &headers) {
        return r;
    }
    match id.checked_sub(1).and_then(|i| s.schemas.get(i as usize)) {
        Some(schema) => Json(json!({"schema": schema})).into_response(),
        None => not_found(40403, "Schema not found"),
    }
}

async fn version(
    State(st): State<Shared>,
    headers: HeaderMap,
    Path((subject, version)): Path<(String, String)>,
) -> Response {
    let Ok(mut s) = st.lock() else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    if let Some(r) = unavailable(&mut s, &headers) {
        return r;
    }
    let Some(ids) = s.subjects.get(&subject) else {
        return not_found(40401, "Subject not found");
    };
    let idx = if version == "latest" {
        ids.len()
    } else {
        version.parse::<usize>().unwrap_or(0)
    };
    match idx.checked_sub(1).and_then(|i| ids.get(i)) {
        Some(id) => {
            let schema = s.schemas.get(*id as usize - 1).cloned().unwrap_or_default();
            Json(json!({"subject": subject, "id": id, "version": idx, "schema": schema}))
                .into_response()
        }
        None => not_found(40402, "Version not found"),
    }
}

fn register_in(s: &mut Inner, subject: &str, schema: &str) -> u32 {
    let id = match s.schemas.iter().position(|x| x == schema) {
        Some(i) => i as u32 + 1,
        None => {
            s.schemas.push(schema.to_string());
            s.schemas.len() as u32
        }
    };
    let versions = s.subjects.entry(subject.to_string()).or_default();
    if !versions.contains(&id) {
        versions.push(id);
    }
    id
}

async fn register(
    State(st): State<Shared>,
    headers: HeaderMap,
    Path(subject): Path<String>,
    Json(body): Json<Value>,
) -> Response {
    let Ok(mut s) = st.lock() else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    if let Some(r) = unavailable(&mut s, &headers) {
        return r;
    }
    let Some(schema) = body.get("schema").and_then(Value::as_str) else {
        return (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({"error_code": 42201, "message": "Invalid schema"})),
        )
            .into_response();
    };
    Json(json!({"id": register_in(&mut s, &subject, schema)})).into_response()
}

impl RegistryFixture {
    /// Starts the fixture on `127.0.0.1:0`.
    pub async fn start() -> std::io::Result<Self> {
        Self::serve(Inner::default()).await
    }

    /// Starts a fixture that answers 401 to every request without HTTP basic auth
    /// `user:password`.
    pub async fn start_with_basic_auth(user: &str, password: &str) -> std::io::Result<Self> {
        use base64::Engine as _;
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        Self::serve(Inner {
            auth: Some(format!("Basic {token}")),
            ..Inner::default()
        })
        .await
    }

    async fn serve(inner: Inner) -> std::io::Result<Self> {
        let state: Shared = Arc::new(Mutex::new(inner));
        let app = Router::new()
            .route("/schemas/ids/{id}", get(by_id))
            .route("/subjects/{subject}/versions/{version}", get(version))
            .route("/subjects/{subject}/versions", post(register))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { url, state, task })
    }

    /// Registers a schema under a subject directly; returns its id.
    pub fn register(&self, subject: &str, schema: &str) -> u32 {
        self.state
            .lock()
            .map(|mut s| register_in(&mut s, subject, schema))
            .unwrap_or(0)
    }

    /// Answers 503 to the next `n` requests.
    pub fn fail_next(&self, n: u32) {
        if let Ok(mut s) = self.state.lock() {
            s.fail_next = n;
        }
    }

    /// Answers 503 to every request for the next `d` (an outage of that length).
    pub fn down_for(&self, d: std::time::Duration) {
        if let Ok(mut s) = self.state.lock() {
            s.down_until = Some(std::time::Instant::now() + d);
        }
    }

    /// Requests refused with 401 for missing or wrong credentials.
    pub fn unauthorized(&self) -> u64 {
        self.state.lock().map(|s| s.unauthorized).unwrap_or(0)
    }

    /// (requests served, requests answered 503).
    pub fn counts(&self) -> (u64, u64) {
        self.state
            .lock()
            .map(|s| (s.requests, s.failed))
            .unwrap_or((0, 0))
    }
}
