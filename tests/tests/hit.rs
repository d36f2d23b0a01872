//! A page is served from the cache: the handler runs once for identical requests, and
//! the stored response comes back whole, with `Age` and `Cache-Status: hit`.

use std::sync::atomic::{AtomicUsize, Ordering};

use axum::{
    Extension, Router,
    extract::{FromRequestParts, State},
    http::{StatusCode, request::Parts},
    routing::get,
};
use cache_page_runtime::{Cache, cache_page, keys};
use cache_page_tests::{Hits, Reply, both_stores, fetch, fetch_with};

#[cache_page(timeout = 60)]
async fn page(State(hits): State<Hits>) -> impl axum::response::IntoResponse {
    let n = hits.bump();
    (
        [("content-type", "text/html; charset=utf-8")],
        [("x-run", n.to_string())],
        format!("<p>run {n}</p>"),
    )
}

static BARE_RUNS: AtomicUsize = AtomicUsize::new(0);

#[cache_page(timeout = 60)]
async fn bare() -> String {
    format!("bare run {}", BARE_RUNS.fetch_add(1, Ordering::SeqCst) + 1)
}

/// A guard written as an extractor: it must keep working on cached pages.
struct Member;

impl<S: Send + Sync> FromRequestParts<S> for Member {
    type Rejection = StatusCode;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        if parts.headers.contains_key("x-member") {
            Ok(Member)
        } else {
            Err(StatusCode::UNAUTHORIZED)
        }
    }
}

#[cache_page(timeout = 60, key = keys::path_key)]
async fn members_only(State(hits): State<Hits>, _member: Member) -> String {
    format!("members run {}", hits.bump())
}

fn app(cache: &Cache, hits: &Hits) -> Router {
    Router::new()
        .route("/page", get(page))
        .route("/bare", get(bare))
        .route("/members", get(members_only))
        .with_state(hits.clone())
        .layer(Extension(cache.clone()))
}

/// Every header of `miss` is on `hit` with the same values in the same order, and
/// `hit` has no other header but `Age` and `Cache-Status`.
fn assert_same_headers(miss: &Reply, hit: &Reply) {
    let volatile = |name: &str| name == "age" || name == "cache-status";
    for name in miss.headers.keys().filter(|n| !volatile(n.as_str())) {
        assert_eq!(
            miss.header_all(name.as_str()),
            hit.header_all(name.as_str()),
            "header {name}"
        );
    }
    for name in hit.headers.keys().filter(|n| !volatile(n.as_str())) {
        assert!(
            miss.headers.contains_key(name),
            "the hit has a header the miss had not: {name}"
        );
    }
}

async fn second_identical_request_is_a_hit(cache: Cache) {
    let hits = Hits::new();
    let app = app(&cache, &hits);

    let miss = fetch(&app, "/page").await;
    assert_eq!(miss.status, StatusCode::OK);
    assert_eq!(miss.text(), "<p>run 1</p>");
    assert!(
        !miss.is_hit(),
        "the first request is a miss: {:?}",
        miss.cache_status()
    );

    let hit = fetch(&app, "/page").await;
    assert_eq!(
        hits.get(),
        1,
        "the handler ran for the second identical request"
    );
    assert!(
        hit.is_hit(),
        "Cache-Status of the second request: {:?}",
        hit.cache_status()
    );
    assert_eq!(hit.status, miss.status);
    assert_eq!(hit.body, miss.body);
    assert_same_headers(&miss, &hit);
    let age = hit.header("age").expect("a hit carries Age");
    age.parse::<u64>()
        .unwrap_or_else(|_| panic!("Age is a number of seconds: {age:?}"));

    let third = fetch(&app, "/page").await;
    assert!(third.is_hit());
    assert_eq!(third.body, miss.body);
    assert_eq!(hits.get(), 1);
}

async fn handler_without_arguments_is_cached(cache: Cache) {
    let app = app(&cache, &Hits::new());
    let miss = fetch(&app, "/bare").await;
    assert_eq!(miss.status, StatusCode::OK);
    let hit = fetch(&app, "/bare").await;
    assert!(hit.is_hit(), "Cache-Status: {:?}", hit.cache_status());
    assert_eq!(hit.body, miss.body);
}

async fn extractors_still_run_on_hits(cache: Cache) {
    let hits = Hits::new();
    let app = app(&cache, &hits);
    let member = [("x-member", "yes")];

    let miss = fetch_with(&app, "/members", &member).await;
    assert_eq!(miss.text(), "members run 1");
    let hit = fetch_with(&app, "/members", &member).await;
    assert!(hit.is_hit());
    assert_eq!(hit.text(), "members run 1");

    // The page is cached, but the guard still refuses a request without the header.
    let refused = fetch(&app, "/members").await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    assert!(!refused.is_hit());
    assert_ne!(refused.text(), "members run 1");
    assert_eq!(hits.get(), 1);
}

both_stores!(
    second_identical_request_is_a_hit,
    handler_without_arguments_is_cached,
    extractors_still_run_on_hits,
);
