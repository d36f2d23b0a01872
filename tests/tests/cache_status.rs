//! The exact `Cache-Status` (RFC 9211) of every outcome, its name or absence as the
//! cache is built, and `Age` / `Expires` on what the cache serves and stores.

use std::time::Duration;

use axum::{
    Extension, Router,
    body::Body,
    extract::{Path, Request, State},
    http::{Method, StatusCode, header},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::get,
};
use cache_page_runtime::{Cache, DoNotCache, RefreshCache, Store, cache_page};
use cache_page_tests::{Hits, Reply, both_stores, fetch, fetch_with, request};

#[cache_page(timeout = 60)]
async fn page(State(hits): State<Hits>) -> String {
    format!("run {}", hits.bump())
}

#[cache_page(timeout = 60)]
async fn not_stored(State(hits): State<Hits>, Path(kind): Path<String>) -> Response {
    hits.bump();
    match kind.as_str() {
        "set-cookie" => ([(header::SET_COOKIE, "id=1")], "cookie").into_response(),
        "status" => (StatusCode::INTERNAL_SERVER_ERROR, "failed").into_response(),
        "streaming" => Body::from_stream(Body::from("streamed").into_data_stream()).into_response(),
        _ => panic!("unknown kind {kind}"),
    }
}

/// A handler that passes on the `Cache-Status` of a cache nearer the origin, as a
/// proxy would.
#[cache_page(timeout = 60)]
async fn proxied(State(hits): State<Hits>) -> Response {
    let run = hits.bump();
    ([("cache-status", "upstream; hit")], format!("run {run}")).into_response()
}

async fn steer(mut req: Request, next: Next) -> Response {
    if req.headers().contains_key("x-bypass") {
        req.extensions_mut().insert(DoNotCache);
    }
    if req.headers().contains_key("x-refresh") {
        req.extensions_mut().insert(RefreshCache);
    }
    next.run(req).await
}

fn app(cache: &Cache, hits: &Hits) -> Router {
    Router::new()
        .route("/page", get(page).post(page))
        .route("/not-stored/{kind}", get(not_stored))
        .route("/proxied", get(proxied))
        .with_state(hits.clone())
        .layer(middleware::from_fn(steer))
        .layer(Extension(cache.clone()))
}

/// The `ttl` of a hit's `Cache-Status` `"<name>; hit; ttl=<n>"`.
fn hit_ttl(reply: &Reply, name: &str) -> i64 {
    let status = reply.cache_status();
    status
        .strip_prefix(&format!("{name}; hit; ttl="))
        .and_then(|ttl| ttl.parse().ok())
        .unwrap_or_else(|| panic!("not a {name} hit: {status:?}"))
}

async fn every_outcome_has_its_exact_cache_status(cache: Cache) {
    let hits = Hits::new();
    let app = app(&cache, &hits);
    let miss = fetch(&app, "/page").await;
    assert_eq!(
        miss.cache_status(),
        "cache-page; fwd=uri-miss; stored; ttl=60"
    );
    let hit = fetch(&app, "/page").await;
    let ttl = hit_ttl(&hit, "cache-page");
    assert!((1..=60).contains(&ttl), "ttl={ttl}");
    let post = request(&app, Method::POST, "/page", &[]).await;
    assert_eq!(post.cache_status(), "cache-page; fwd=method");
    let bypass = fetch_with(&app, "/page", &[("x-bypass", "1")]).await;
    assert_eq!(bypass.cache_status(), "cache-page; fwd=bypass");
    let refresh = fetch_with(&app, "/page", &[("x-refresh", "1")]).await;
    assert_eq!(
        refresh.cache_status(),
        "cache-page; fwd=request; stored; ttl=60"
    );
    assert_eq!(hits.get(), 4);
    for kind in ["set-cookie", "status", "streaming"] {
        let reply = fetch(&app, &format!("/not-stored/{kind}")).await;
        assert_eq!(
            reply.cache_status(),
            format!("cache-page; fwd=uri-miss; detail={kind}")
        );
    }
}

async fn hits_carry_age_and_stored_responses_expires(cache: Cache) {
    let hits = Hits::new();
    let app = app(&cache, &hits);
    let miss = fetch(&app, "/page").await;
    let hit = fetch(&app, "/page").await;
    assert!(hit.is_hit());
    let age: u64 = hit
        .header("age")
        .expect("a hit carries Age")
        .parse()
        .expect("Age is a number of seconds");
    assert!(age <= 60, "Age {age}");
    let expires = miss
        .header("expires")
        .expect("a stored response has Expires");
    assert!(httpdate_like(expires), "{expires:?}");
    assert_eq!(
        hit.header("expires"),
        Some(expires),
        "the hit's Expires was not stored"
    );
}

fn httpdate_like(value: &str) -> bool {
    value.ends_with(" GMT") && value.len() == "Sun, 06 Nov 1994 08:49:37 GMT".len()
}

both_stores!(
    every_outcome_has_its_exact_cache_status,
    hits_carry_age_and_stored_responses_expires,
);

/// Runs `async fn name(store)` on a new `MemoryStore` and on a Redis store, for tests
/// that build their cache themselves.
macro_rules! on_both_stores {
    ($($test:ident),+ $(,)?) => {$(
        mod $test {
            #[tokio::test]
            async fn memory() {
                super::$test(cache_page_runtime::MemoryStore::new()).await;
            }

            #[tokio::test]
            async fn redis() {
                let server = cache_page_tests::RedisServer::start();
                super::$test(server.store(stringify!($test))).await;
                drop(server);
            }
        }
    )+};
}

fn named(store: impl Store, name: Option<&'static str>) -> Cache {
    Cache::builder(store)
        .timeout(Duration::from_secs(5))
        .cache_status(name)
        .build()
}

async fn no_header_when_turned_off(store: impl Store) {
    let cache = named(store, None);
    assert_eq!(cache.cache_status(), None);
    let hits = Hits::new();
    let app = app(&cache, &hits);
    let replies = [
        fetch(&app, "/page").await,
        fetch(&app, "/page").await,
        request(&app, Method::POST, "/page", &[]).await,
        fetch_with(&app, "/page", &[("x-bypass", "1")]).await,
        fetch(&app, "/not-stored/status").await,
    ];
    for reply in &replies {
        assert!(
            !reply.headers.contains_key("cache-status"),
            "Cache-Status sent while turned off: {:?}",
            reply.cache_status()
        );
    }
    assert_eq!(
        replies[1].text(),
        "run 1",
        "still cached without the header"
    );
    assert!(replies[1].headers.contains_key("age"));
}

async fn a_custom_name(store: impl Store) {
    let cache = named(store, Some("edge"));
    let hits = Hits::new();
    let app = app(&cache, &hits);
    let miss = fetch(&app, "/page").await;
    assert_eq!(miss.cache_status(), "edge; fwd=uri-miss; stored; ttl=60");
    assert!((1..=60).contains(&hit_ttl(&fetch(&app, "/page").await, "edge")));
    let post = request(&app, Method::POST, "/page", &[]).await;
    assert_eq!(post.cache_status(), "edge; fwd=method");
    let bypass = fetch_with(&app, "/page", &[("x-bypass", "1")]).await;
    assert_eq!(bypass.cache_status(), "edge; fwd=bypass");
    let failed = fetch(&app, "/not-stored/status").await;
    assert_eq!(failed.cache_status(), "edge; fwd=uri-miss; detail=status");
}

/// RFC 9211 §2: a cache adds its member after those of the caches nearer the origin,
/// and keeps them; turned off, it leaves them alone.
async fn the_cache_adds_itself_after_the_upstream_caches(store: impl Store) {
    let cache = named(store, Some("edge"));
    let hits = Hits::new();
    let edge = app(&cache, &hits);
    let miss = fetch(&edge, "/proxied").await;
    assert_eq!(
        miss.cache_status(),
        "upstream; hit, edge; fwd=uri-miss; stored; ttl=60"
    );
    for _ in 0..3 {
        let hit = fetch(&edge, "/proxied").await;
        assert_eq!(hit.text(), "run 1");
        let status = hit.cache_status();
        let ttl = status
            .strip_prefix("upstream; hit, edge; hit; ttl=")
            .and_then(|ttl| ttl.parse::<u64>().ok())
            .unwrap_or_else(|| panic!("not an edge hit after upstream: {status:?}"));
        assert!((1..=60).contains(&ttl), "ttl={ttl}");
    }
    let validated = fetch_with(
        &edge,
        "/proxied",
        &[("if-none-match", miss.header("etag").expect("an ETag"))],
    )
    .await;
    assert_eq!(validated.status, StatusCode::NOT_MODIFIED);
    assert!(
        validated
            .cache_status()
            .starts_with("upstream; hit, edge; hit; ttl="),
        "{:?}",
        validated.cache_status()
    );
    let bypass = fetch_with(&edge, "/proxied", &[("x-bypass", "1")]).await;
    assert_eq!(bypass.cache_status(), "upstream; hit, edge; fwd=bypass");

    let quiet = named(cache_page_runtime::MemoryStore::new(), None);
    let quiet_app = app(&quiet, &hits);
    assert_eq!(
        fetch(&quiet_app, "/proxied").await.cache_status(),
        "upstream; hit"
    );
    let hit = fetch(&quiet_app, "/proxied").await;
    assert!(hit.headers.contains_key("age"), "not a hit");
    assert_eq!(hit.cache_status(), "upstream; hit");
}

on_both_stores!(
    no_header_when_turned_off,
    a_custom_name,
    the_cache_adds_itself_after_the_upstream_caches
);
