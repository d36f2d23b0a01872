//! The request extensions that steer the cache: `DoNotCache` (nothing read, nothing
//! written) and `RefreshCache` (the handler runs and replaces the entry).

use axum::{
    Extension, Router,
    extract::{FromRequestParts, Request, State},
    http::request::Parts,
    middleware::{self, Next},
    response::Response,
    routing::get,
};
use cache_page_runtime::{Cache, DoNotCache, RefreshCache, cache_page};
use cache_page_tests::{Hits, both_stores, fetch, fetch_with};

#[cache_page(timeout = 60)]
async fn page(State(hits): State<Hits>) -> String {
    format!("run {}", hits.bump())
}

/// Sets `DoNotCache` from an extractor that runs before the handler's last one.
struct BypassOnHeader;

impl<S: Send + Sync> FromRequestParts<S> for BypassOnHeader {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        if parts.headers.contains_key("x-bypass") {
            parts.extensions.insert(DoNotCache);
        }
        Ok(BypassOnHeader)
    }
}

#[cache_page(timeout = 60)]
async fn page_with_bypass_extractor(_bypass: BypassOnHeader, State(hits): State<Hits>) -> String {
    format!("run {}", hits.bump())
}

async fn bypass_middleware(mut req: Request, next: Next) -> Response {
    if req.headers().contains_key("x-bypass") {
        req.extensions_mut().insert(DoNotCache);
    }
    next.run(req).await
}

async fn refresh_middleware(mut req: Request, next: Next) -> Response {
    if req.headers().contains_key("x-refresh") {
        req.extensions_mut().insert(RefreshCache);
    }
    next.run(req).await
}

fn app(cache: &Cache, hits: &Hits) -> Router {
    Router::new()
        .route("/page", get(page))
        .route("/extractor", get(page_with_bypass_extractor))
        .with_state(hits.clone())
        .layer(middleware::from_fn(bypass_middleware))
        .layer(middleware::from_fn(refresh_middleware))
        .layer(Extension(cache.clone()))
}

const BYPASS: [(&str, &str); 1] = [("x-bypass", "1")];

/// A bypassed request on an empty cache stores nothing: the next request is a miss.
async fn assert_bypass_writes_nothing(app: &Router, hits: &Hits, uri: &str) {
    let bypassed = fetch_with(app, uri, &BYPASS).await;
    assert_eq!(bypassed.text(), "run 1");
    assert!(!bypassed.is_hit());
    let next = fetch(app, uri).await;
    assert!(!next.is_hit(), "a bypassed request stored its page");
    assert_eq!(next.text(), "run 2");
    assert_eq!(hits.get(), 2);
}

/// A bypassed request on a cached page runs the handler and leaves the entry alone.
async fn assert_bypass_reads_nothing(app: &Router, hits: &Hits, uri: &str) {
    assert_eq!(fetch(app, uri).await.text(), "run 1");
    assert!(fetch(app, uri).await.is_hit());
    let bypassed = fetch_with(app, uri, &BYPASS).await;
    assert!(
        !bypassed.is_hit(),
        "a bypassed request was served from the cache"
    );
    assert_eq!(bypassed.text(), "run 2");
    let next = fetch(app, uri).await;
    assert!(next.is_hit());
    assert_eq!(
        next.text(),
        "run 1",
        "a bypassed request replaced the cached page"
    );
    assert_eq!(hits.get(), 2);
}

async fn do_not_cache_from_middleware_writes_nothing(cache: Cache) {
    let hits = Hits::new();
    assert_bypass_writes_nothing(&app(&cache, &hits), &hits, "/page").await;
}

async fn do_not_cache_from_middleware_reads_nothing(cache: Cache) {
    let hits = Hits::new();
    assert_bypass_reads_nothing(&app(&cache, &hits), &hits, "/page").await;
}

async fn do_not_cache_from_extractor_writes_nothing(cache: Cache) {
    let hits = Hits::new();
    assert_bypass_writes_nothing(&app(&cache, &hits), &hits, "/extractor").await;
}

async fn do_not_cache_from_extractor_reads_nothing(cache: Cache) {
    let hits = Hits::new();
    assert_bypass_reads_nothing(&app(&cache, &hits), &hits, "/extractor").await;
}

async fn refresh_cache_replaces_the_entry(cache: Cache) {
    let hits = Hits::new();
    let app = app(&cache, &hits);
    assert_eq!(fetch(&app, "/page").await.text(), "run 1");
    // Hit a few times, so that a store keeping each thread's own copy of a hot page
    // (the MemoryStore, the RedisStore's kept pages) holds one: a refresh must not be
    // served from it either.
    for _ in 0..4 {
        assert!(fetch(&app, "/page").await.is_hit());
    }

    let refreshed = fetch_with(&app, "/page", &[("x-refresh", "1")]).await;
    assert!(
        !refreshed.is_hit(),
        "a forced refresh was served from the cache"
    );
    assert_eq!(refreshed.text(), "run 2");

    let next = fetch(&app, "/page").await;
    assert!(next.is_hit());
    assert_eq!(
        next.text(),
        "run 2",
        "the refresh did not replace the entry"
    );
    assert_eq!(hits.get(), 2);
}

async fn refresh_cache_on_an_empty_cache_stores(cache: Cache) {
    let hits = Hits::new();
    let app = app(&cache, &hits);
    let refreshed = fetch_with(&app, "/page", &[("x-refresh", "1")]).await;
    assert_eq!(refreshed.text(), "run 1");
    let next = fetch(&app, "/page").await;
    assert!(next.is_hit());
    assert_eq!(next.text(), "run 1");
}

both_stores!(
    do_not_cache_from_middleware_writes_nothing,
    do_not_cache_from_middleware_reads_nothing,
    do_not_cache_from_extractor_writes_nothing,
    do_not_cache_from_extractor_reads_nothing,
    refresh_cache_replaces_the_entry,
    refresh_cache_on_an_empty_cache_stores,
);
