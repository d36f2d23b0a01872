//! `only_if = <fn>`: requests for which the predicate is false bypass the cache
//! (nothing read, nothing written); the others are cached as usual.

use axum::{
    Extension, Router,
    extract::State,
    http::{Method, request::Parts},
    routing::get,
};
use cache_page_runtime::{Cache, cache_page};
use cache_page_tests::{Hits, both_stores, fetch, fetch_with, request};

/// Previews are never cached.
fn not_a_preview(parts: &Parts) -> bool {
    !parts.headers.contains_key("x-preview")
}

#[cache_page(timeout = 60, only_if = not_a_preview)]
async fn page(State(hits): State<Hits>) -> String {
    format!("run {}", hits.bump())
}

#[cache_page(timeout = 60, only_if = |_: &Parts| true)]
async fn always(State(hits): State<Hits>) -> String {
    format!("run {}", hits.bump())
}

fn app(cache: &Cache, hits: &Hits) -> Router {
    Router::new()
        .route("/page", get(page))
        .route("/always", get(always))
        .with_state(hits.clone())
        .layer(Extension(cache.clone()))
}

const PREVIEW: &[(&str, &str)] = &[("x-preview", "1")];

async fn false_bypasses_and_stores_nothing(cache: Cache) {
    let hits = Hits::new();
    let app = app(&cache, &hits);
    for run in 1..=3 {
        let reply = fetch_with(&app, "/page", PREVIEW).await;
        assert_eq!(reply.cache_status(), "cache-page; fwd=bypass");
        assert_eq!(reply.text(), format!("run {run}"));
    }
    let first = fetch(&app, "/page").await;
    assert_eq!(
        first.cache_status(),
        "cache-page; fwd=uri-miss; stored; ttl=60",
        "a bypassed request stored its page"
    );
    assert_eq!(first.text(), "run 4");
    // Nor is the stored page read for a request the predicate refuses.
    let preview = fetch_with(&app, "/page", PREVIEW).await;
    assert_eq!(preview.text(), "run 5");
    let cached = fetch(&app, "/page").await;
    assert!(cached.is_hit());
    assert_eq!(
        cached.text(),
        "run 4",
        "a bypassed request replaced the page"
    );
}

async fn true_caches(cache: Cache) {
    let hits = Hits::new();
    let app = app(&cache, &hits);
    assert!(fetch(&app, "/always").await.is_stored());
    let hit = fetch(&app, "/always").await;
    assert!(hit.is_hit(), "{:?}", hit.cache_status());
    assert_eq!(hit.text(), "run 1");
    let head = request(&app, Method::HEAD, "/always", &[]).await;
    assert!(head.is_hit(), "{:?}", head.cache_status());
    assert_eq!(hits.get(), 1);
}

both_stores!(false_bypasses_and_stores_nothing, true_caches);
