//! One user's page is never served to another: requests with credentials bypass the
//! cache unless the handler caches per caller, responses that set a cookie or say
//! `private` are never stored, and `Vary: Cookie` keeps sessions apart, also when
//! their requests arrive together.

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use axum::{
    Extension, Router,
    extract::{Request, State},
    http::{HeaderMap, header},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::get,
};
use cache_page_runtime::{Cache, cache_page};
use cache_page_tests::{Hits, both_stores, fetch, fetch_with};

/// Counts handler runs; in a burst, holds every handler until all requests arrived.
#[derive(Clone, Default)]
struct Users {
    runs: Hits,
    arrived: Arc<AtomicUsize>,
    burst: usize,
}

impl Users {
    async fn run(&self) -> usize {
        let n = self.runs.bump();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while self.arrived.load(Ordering::SeqCst) < self.burst {
            assert!(
                tokio::time::Instant::now() < deadline,
                "not every request arrived"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        n
    }
}

fn who(headers: &HeaderMap, name: header::HeaderName) -> String {
    let value = headers.get(name).and_then(|v| v.to_str().ok());
    value.unwrap_or("nobody").to_owned()
}

#[cache_page(timeout = 60)]
async fn shared(State(users): State<Users>, headers: HeaderMap) -> String {
    let n = users.run().await;
    format!("page of {} run {n}", who(&headers, header::AUTHORIZATION))
}

#[cache_page(timeout = 60, authorized = true)]
async fn per_caller(State(users): State<Users>, headers: HeaderMap) -> String {
    let n = users.run().await;
    format!("page of {} run {n}", who(&headers, header::AUTHORIZATION))
}

#[cache_page(timeout = 60)]
async fn sets_cookie(State(users): State<Users>, headers: HeaderMap) -> Response {
    let n = users.run().await;
    let user = who(&headers, "x-user".parse().expect("a header name"));
    let cookie = format!("session={user}");
    (
        [(header::SET_COOKIE, cookie)],
        format!("hello {user} run {n}"),
    )
        .into_response()
}

#[cache_page(timeout = 60)]
async fn private(State(users): State<Users>, headers: HeaderMap) -> Response {
    let n = users.run().await;
    let user = who(&headers, "x-user".parse().expect("a header name"));
    let cc = [(header::CACHE_CONTROL, "private, max-age=60")];
    (cc, format!("account of {user} run {n}")).into_response()
}

#[cache_page(timeout = 60)]
async fn vary_cookie(State(users): State<Users>, headers: HeaderMap) -> Response {
    let n = users.run().await;
    let body = format!("page of {} run {n}", who(&headers, header::COOKIE));
    ([(header::VARY, "Cookie")], body).into_response()
}

async fn arrive(State(users): State<Users>, req: Request, next: Next) -> Response {
    users.arrived.fetch_add(1, Ordering::SeqCst);
    next.run(req).await
}

fn app(cache: &Cache, users: &Users) -> Router {
    Router::new()
        .route("/shared", get(shared))
        .route("/per-caller", get(per_caller))
        .route("/sets-cookie", get(sets_cookie))
        .route("/private", get(private))
        .route("/vary-cookie", get(vary_cookie))
        .layer(middleware::from_fn_with_state(users.clone(), arrive))
        .with_state(users.clone())
        .layer(Extension(cache.clone()))
}

const ALICE: &[(&str, &str)] = &[("authorization", "Bearer alice")];
const BOB: &[(&str, &str)] = &[("authorization", "Bearer bob")];
const CAROL: &[(&str, &str)] = &[("authorization", "Bearer carol")];

async fn credentials_bypass_by_default(cache: Cache) {
    let users = Users::default();
    let app = app(&cache, &users);
    for run in 1..=2 {
        let reply = fetch_with(&app, "/shared", ALICE).await;
        assert_eq!(reply.cache_status(), "cache-page; fwd=bypass");
        assert_eq!(reply.text(), format!("page of Bearer alice run {run}"));
    }
    let anonymous = fetch(&app, "/shared").await;
    assert_eq!(
        anonymous.cache_status(),
        "cache-page; fwd=uri-miss; stored; ttl=60"
    );
    assert_eq!(anonymous.text(), "page of nobody run 3");
    let bob = fetch_with(&app, "/shared", BOB).await;
    assert_eq!(bob.cache_status(), "cache-page; fwd=bypass");
    assert_eq!(bob.text(), "page of Bearer bob run 4");
}

async fn authorized_pages_are_per_caller(cache: Cache) {
    let users = Users::default();
    let app = app(&cache, &users);
    let alice = fetch_with(&app, "/per-caller", ALICE).await;
    assert_eq!(
        alice.cache_status(),
        "cache-page; fwd=uri-miss; stored; ttl=60"
    );
    assert_eq!(alice.text(), "page of Bearer alice run 1");
    let bob = fetch_with(&app, "/per-caller", BOB).await;
    assert!(!bob.is_hit(), "bob was served alice's page");
    assert_eq!(bob.text(), "page of Bearer bob run 2");
    for _ in 0..2 {
        let again = fetch_with(&app, "/per-caller", ALICE).await;
        assert!(again.is_hit(), "{:?}", again.cache_status());
        assert_eq!(again.body, alice.body);
        let again = fetch_with(&app, "/per-caller", BOB).await;
        assert!(again.is_hit(), "{:?}", again.cache_status());
        assert_eq!(again.body, bob.body);
    }
    let carol = fetch_with(&app, "/per-caller", CAROL).await;
    assert_eq!(carol.text(), "page of Bearer carol run 3");
    let anonymous = fetch(&app, "/per-caller").await;
    assert_eq!(
        anonymous.text(),
        "page of nobody run 4",
        "a caller's page was shared"
    );
    let other_case = fetch_with(&app, "/per-caller", &[("authorization", "bearer alice")]).await;
    assert_eq!(other_case.text(), "page of bearer alice run 5");
    assert_eq!(users.runs.get(), 5);
}

async fn cookies_and_private_pages_are_never_served_to_another(cache: Cache) {
    let users = Users::default();
    let app = app(&cache, &users);
    for (uri, detail) in [
        ("/sets-cookie", "set-cookie"),
        ("/private", "cache-control"),
    ] {
        for user in ["alice", "bob", "alice"] {
            let reply = fetch_with(&app, uri, &[("x-user", user)]).await;
            assert!(!reply.is_hit(), "{uri}: {user} was served a stored page");
            assert!(
                reply.text().contains(&format!(" {user} run ")),
                "{uri}: {user} got {}",
                reply.text()
            );
            assert_eq!(
                reply.cache_status(),
                format!("cache-page; fwd=uri-miss; detail={detail}")
            );
        }
    }
    let cookie = fetch_with(&app, "/sets-cookie", &[("x-user", "carol")]).await;
    assert_eq!(cookie.header("set-cookie"), Some("session=carol"));
    assert_eq!(users.runs.get(), 7);
}

async fn vary_cookie_keeps_sessions_apart(cache: Cache) {
    let users = Users::default();
    let app = app(&cache, &users);
    let alice = [("cookie", "session=alice")];
    let bob = [("cookie", "session=bob")];
    assert_eq!(
        fetch_with(&app, "/vary-cookie", &alice).await.text(),
        "page of session=alice run 1"
    );
    let b = fetch_with(&app, "/vary-cookie", &bob).await;
    assert_eq!(
        b.text(),
        "page of session=bob run 2",
        "bob was served alice's page"
    );
    for _ in 0..2 {
        let a = fetch_with(&app, "/vary-cookie", &alice).await;
        assert_eq!(a.text(), "page of session=alice run 1");
        let b = fetch_with(&app, "/vary-cookie", &bob).await;
        assert_eq!(b.text(), "page of session=bob run 2");
    }
    assert_eq!(
        fetch(&app, "/vary-cookie").await.text(),
        "page of nobody run 3"
    );
}

/// Many users at once on a cold page: the one whose handler runs first must not
/// have its response handed to the others waiting on the same page.
async fn concurrent_users_never_share(cache: Cache) {
    const N: usize = 8;
    let users = Users {
        burst: 2 * N,
        ..Users::default()
    };
    let app = app(&cache, &users);
    let tasks: Vec<_> = (0..2 * N)
        .map(|i| {
            let app = app.clone();
            tokio::spawn(async move {
                let user = format!("u{}", i % N);
                if i < N {
                    let cookie = format!("session={user}");
                    let reply = fetch_with(&app, "/vary-cookie", &[("cookie", &cookie)]).await;
                    (format!("page of {cookie} run "), reply)
                } else {
                    let reply = fetch_with(&app, "/sets-cookie", &[("x-user", &user)]).await;
                    (format!("hello {user} run "), reply)
                }
            })
        })
        .collect();
    for task in tasks {
        let (expected, reply) = task.await.expect("no request failed");
        assert!(
            reply.text().starts_with(&expected),
            "a user was served another's page: {} instead of {expected}…",
            reply.text()
        );
    }
}

both_stores!(
    credentials_bypass_by_default,
    authorized_pages_are_per_caller,
    cookies_and_private_pages_are_never_served_to_another,
    vary_cookie_keeps_sessions_apart,
    concurrent_users_never_share,
);
