//! Leader election against an in-memory Lease endpoint with optimistic concurrency.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use kube::client::Body;

use super::*;

/// Serves one Lease like the API server does: GET, POST (409 when it exists), PUT (409 when
/// the `resourceVersion` is stale). `down` makes every call fail with 500.
#[derive(Clone, Default)]
struct FakeLeases {
    lease: Arc<Mutex<Option<Lease>>>,
    version: Arc<Mutex<u64>>,
    down: Arc<Mutex<bool>>,
}

fn status(code: StatusCode, reason: &str) -> Response<Body> {
    let body = serde_json::json!({
        "kind": "Status", "apiVersion": "v1", "status": "Failure",
        "reason": reason, "code": code.as_u16(), "message": reason
    });
    Response::builder()
        .status(code)
        .body(Body::from(serde_json::to_vec(&body).unwrap()))
        .unwrap()
}

impl FakeLeases {
    fn client(&self) -> Client {
        let me = self.clone();
        let svc = tower::service_fn(move |req: Request<Body>| {
            let me = me.clone();
            async move { Ok::<_, Infallible>(me.handle(req).await) }
        });
        Client::new(svc, "default")
    }

    async fn handle(&self, req: Request<Body>) -> Response<Body> {
        if *self.down.lock().unwrap() {
            return status(StatusCode::INTERNAL_SERVER_ERROR, "InternalError");
        }
        let method = req.method().clone();
        let body = req.into_body().collect().await.unwrap().to_bytes();
        let mut lease = self.lease.lock().unwrap();
        let mut version = self.version.lock().unwrap();
        let ok = |l: &Lease, code: StatusCode| {
            Response::builder()
                .status(code)
                .body(Body::from(serde_json::to_vec(l).unwrap()))
                .unwrap()
        };
        match method {
            Method::GET => match lease.as_ref() {
                Some(l) => ok(l, StatusCode::OK),
                None => status(StatusCode::NOT_FOUND, "NotFound"),
            },
            Method::POST | Method::PUT => {
                let mut new: Lease = serde_json::from_slice(&body).unwrap();
                let current = lease
                    .as_ref()
                    .and_then(|l| l.metadata.resource_version.clone());
                let conflict = match method {
                    Method::POST => lease.is_some(),
                    _ => new.metadata.resource_version != current,
                };
                if conflict {
                    return status(StatusCode::CONFLICT, "Conflict");
                }
                *version += 1;
                new.metadata.resource_version = Some(version.to_string());
                *lease = Some(new.clone());
                ok(&new, StatusCode::OK)
            }
            _ => status(StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowed"),
        }
    }

    fn holder(&self) -> Option<String> {
        self.lease
            .lock()
            .unwrap()
            .as_ref()
            .and_then(|l| l.spec.as_ref())
            .and_then(|s| s.holder_identity.clone())
    }
}

fn cfg(identity: &str) -> LeaseConfig {
    LeaseConfig {
        namespace: "spillway-system".into(),
        name: "spillway-operator".into(),
        identity: identity.into(),
        lease_duration: Duration::from_secs(15),
        retry_period: Duration::from_secs(5),
    }
}

#[test]
fn decisions() {
    let held = |holder: Option<&str>, rv: &str| Lease {
        metadata: ObjectMeta {
            resource_version: Some(rv.into()),
            ..Default::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: holder.map(Into::into),
            lease_duration_seconds: Some(10),
            ..Default::default()
        }),
    };
    let d = Duration::from_secs(15);
    let t0 = Instant::now();
    let mut obs = Observed::default();
    assert_eq!(decide(None, "a", &mut obs, t0, d), Decision::Create);
    assert_eq!(
        decide(Some(&held(Some("a"), "1")), "a", &mut obs, t0, d),
        Decision::Renew
    );
    assert_eq!(
        decide(Some(&held(None, "1")), "a", &mut obs, t0, d),
        Decision::Acquire
    );
    assert_eq!(
        decide(Some(&held(Some(""), "1")), "a", &mut obs, t0, d),
        Decision::Acquire
    );
    // held by b: wait a full lease duration (10s, from the lease) without change
    let b = held(Some("b"), "7");
    assert_eq!(decide(Some(&b), "a", &mut obs, t0, d), Decision::Wait);
    let t9 = t0 + Duration::from_secs(9);
    assert_eq!(decide(Some(&b), "a", &mut obs, t9, d), Decision::Wait);
    // b renewed at 9s: the clock restarts
    let b2 = held(Some("b"), "8");
    assert_eq!(decide(Some(&b2), "a", &mut obs, t9, d), Decision::Wait);
    let t18 = t0 + Duration::from_secs(18);
    assert_eq!(decide(Some(&b2), "a", &mut obs, t18, d), Decision::Wait);
    let t19 = t0 + Duration::from_secs(19);
    assert_eq!(decide(Some(&b2), "a", &mut obs, t19, d), Decision::Acquire);
}

#[tokio::test(start_paused = true)]
async fn two_replicas_never_both_lead_and_the_second_takes_over() {
    let fake = FakeLeases::default();
    let mut a = Elector::new(fake.client(), cfg("a"));
    let mut b = Elector::new(fake.client(), cfg("b"));
    for _ in 0..10 {
        let la = a.round().await.unwrap();
        let lb = b.round().await.unwrap();
        assert!(!(la && lb), "both lead");
        assert!(la, "the first candidate keeps renewing");
        tokio::time::advance(Duration::from_secs(5)).await;
    }
    // a dies without releasing: b waits out the lease duration, then takes over
    let mut rounds = 0;
    while !b.round().await.unwrap() {
        rounds += 1;
        tokio::time::advance(Duration::from_secs(5)).await;
    }
    assert_eq!(rounds, 2, "waits 15s of unchanged lease");
    assert_eq!(fake.holder().as_deref(), Some("b"));
    // a comes back: it follows
    assert!(!a.round().await.unwrap());
    assert!(!a.is_leading());
}

#[tokio::test(start_paused = true)]
async fn a_released_lease_is_taken_at_once() {
    let fake = FakeLeases::default();
    let mut a = Elector::new(fake.client(), cfg("a"));
    let mut b = Elector::new(fake.client(), cfg("b"));
    assert!(a.round().await.unwrap());
    assert!(!b.round().await.unwrap());
    a.release().await.unwrap();
    assert_eq!(fake.holder(), None);
    assert!(b.round().await.unwrap());
    assert!(!a.round().await.unwrap());
}

#[tokio::test(start_paused = true)]
async fn a_leader_that_cannot_renew_steps_down_before_the_lease_expires() {
    let fake = FakeLeases::default();
    let mut a = Elector::new(fake.client(), cfg("a"));
    assert!(a.round().await.unwrap());
    *fake.down.lock().unwrap() = true;
    tokio::time::advance(Duration::from_secs(5)).await;
    assert!(a.round().await.is_err());
    assert!(a.is_leading(), "one failed renewal is tolerated");
    tokio::time::advance(Duration::from_secs(5)).await;
    assert!(a.round().await.is_err());
    assert!(
        !a.is_leading(),
        "10s without renewal: past the renew deadline"
    );
}
