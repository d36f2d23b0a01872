//! `statuses = [...]`: which statuses are stored, each with the timeout a timeout
//! function gives it; a `304` or a `206` is never stored, even if listed (the attribute
//! rejects them at compile time; a `PageConfig` drops them).

use axum::{
    Extension, Router,
    extract::{Path, State},
    http::{StatusCode, header, response::Parts},
    response::{IntoResponse, Response},
    routing::get,
};
use cache_page_runtime::{Cache, CachePageLayer, PageConfig, cache_page};
use cache_page_tests::{Hits, RedisServer, Reply, both_stores, fetch, fetch_with, memory_cache};

/// A 404 lives 10 s, anything else 60 s.
fn by_status(response: &Parts) -> u64 {
    if response.status == StatusCode::NOT_FOUND {
        10
    } else {
        60
    }
}

#[cache_page(timeout = by_status, statuses = [200, 404])]
async fn item(State(hits): State<Hits>, Path(code): Path<u16>) -> Response {
    let n = hits.bump();
    let status = StatusCode::from_u16(code).expect("a valid status");
    (
        status,
        [(header::ETAG, format!("\"{code}\""))],
        format!("status {code} run {n}"),
    )
        .into_response()
}

/// The attribute refuses `statuses = [200, 304]` at compile time; a `PageConfig`
/// accepts it, in a layer (`not_modified_app`).
async fn not_modified(State(hits): State<Hits>) -> Response {
    let n = hits.bump();
    (StatusCode::NOT_MODIFIED, [("x-run", n.to_string())]).into_response()
}

/// A handler that answers `Range` itself; a `PageConfig` accepts
/// `statuses(&[200, 206])` (`partial_app`), the attribute refuses it.
async fn partial(State(hits): State<Hits>) -> Response {
    let n = hits.bump();
    (
        StatusCode::PARTIAL_CONTENT,
        [(header::CONTENT_RANGE, "bytes 0-4/100")],
        format!("run{n}"),
    )
        .into_response()
}

fn app(cache: &Cache, hits: &Hits) -> Router {
    Router::new()
        .route("/item/{code}", get(item))
        .merge(not_modified_app())
        .merge(partial_app())
        .with_state(hits.clone())
        .layer(Extension(cache.clone()))
}

fn not_modified_app() -> Router<Hits> {
    Router::new()
        .route("/not-modified", get(not_modified))
        .route_layer(CachePageLayer::new(
            PageConfig::new(60u64).statuses(&[200, 304]),
        ))
}

fn partial_app() -> Router<Hits> {
    Router::new()
        .route("/partial", get(partial))
        .route_layer(CachePageLayer::new(
            PageConfig::new(60u64).statuses(&[200, 206]),
        ))
}

fn max_age(reply: &Reply) -> &str {
    let cc = reply.header("cache-control").unwrap_or("");
    cc.split(',')
        .find_map(|d| d.trim().strip_prefix("max-age="))
        .unwrap_or_else(|| panic!("no max-age in {cc:?}"))
}

async fn a_listed_404_is_stored_with_its_own_timeout(cache: Cache) {
    let hits = Hits::new();
    let app = app(&cache, &hits);
    let miss = fetch(&app, "/item/404").await;
    assert_eq!(miss.status, StatusCode::NOT_FOUND);
    assert_eq!(
        miss.cache_status(),
        "cache-page; fwd=uri-miss; stored; ttl=10"
    );
    let hit = fetch(&app, "/item/404").await;
    assert!(
        hit.is_hit(),
        "the 404 was not stored: {:?}",
        hit.cache_status()
    );
    assert_eq!(hit.status, StatusCode::NOT_FOUND);
    assert_eq!(hit.text(), "status 404 run 1");
    assert_eq!(hits.get(), 1, "the handler ran twice for a stored 404");
    assert_eq!(max_age(&miss), "10");
    assert_eq!(max_age(&hit), "10");

    let ok = fetch(&app, "/item/200").await;
    assert_eq!(
        ok.cache_status(),
        "cache-page; fwd=uri-miss; stored; ttl=60"
    );
    assert_eq!(max_age(&ok), "60");
    assert!(fetch(&app, "/item/200").await.is_hit());
    assert_eq!(hits.get(), 2);
}

async fn an_unlisted_status_is_still_not_stored(cache: Cache) {
    let hits = Hits::new();
    let app = app(&cache, &hits);
    for run in 1..=2 {
        let reply = fetch(&app, "/item/500").await;
        assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(
            reply.cache_status(),
            "cache-page; fwd=uri-miss; detail=status"
        );
        assert_eq!(reply.text(), format!("status 500 run {run}"));
    }
}

async fn a_304_is_never_stored_even_if_listed(cache: Cache) {
    let hits = Hits::new();
    let app = app(&cache, &hits);
    for run in 1..=2 {
        let reply = fetch(&app, "/not-modified").await;
        assert_eq!(reply.status, StatusCode::NOT_MODIFIED);
        assert_eq!(
            reply.cache_status(),
            "cache-page; fwd=uri-miss; detail=not-modified"
        );
        assert_eq!(reply.header("x-run"), Some(run.to_string().as_str()));
    }
    assert_eq!(hits.get(), 2);
}

/// A 206 is one range of a page: stored under the page's URL, it would be served to
/// requests for the whole page.
async fn a_206_is_never_stored_even_if_listed(cache: Cache) {
    let hits = Hits::new();
    let app = app(&cache, &hits);
    for run in 1..=2 {
        let reply = fetch_with(&app, "/partial", &[("range", "bytes=0-4")]).await;
        assert_eq!(reply.status, StatusCode::PARTIAL_CONTENT);
        assert_eq!(
            reply.cache_status(),
            "cache-page; fwd=uri-miss; detail=status"
        );
        assert_eq!(reply.text(), format!("run{run}"));
    }
    let whole = fetch(&app, "/partial").await;
    assert!(!whole.is_hit(), "a range was served as the whole page");
    assert_eq!(hits.get(), 3);
}

/// RFC 9110 §13.2.1: preconditions are ignored when the response without them would
/// not be a 2xx: a stored 404 is served as a 404 whatever `If-None-Match` says.
async fn a_stored_404_ignores_if_none_match(cache: Cache) {
    let hits = Hits::new();
    let app = app(&cache, &hits);
    let inm = [("if-none-match", "\"404\"")];
    assert!(fetch(&app, "/item/404").await.is_stored());
    let hit = fetch_with(&app, "/item/404", &inm).await;
    assert!(hit.is_hit());
    assert_eq!(
        hit.status,
        StatusCode::NOT_FOUND,
        "a conditional hit of a 404"
    );
    assert_eq!(hit.text(), "status 404 run 1");
    let miss = fetch_with(&app, "/item/404?other", &inm).await;
    assert!(miss.is_stored());
    assert_eq!(
        miss.status,
        StatusCode::NOT_FOUND,
        "a conditional miss of a 404"
    );
    assert_eq!(miss.text(), "status 404 run 2");
}

both_stores!(
    a_listed_404_is_stored_with_its_own_timeout,
    an_unlisted_status_is_still_not_stored,
    a_304_is_never_stored_even_if_listed,
    a_206_is_never_stored_even_if_listed,
);

#[tokio::test]
async fn a_stored_404_ignores_if_none_match_memory() {
    a_stored_404_ignores_if_none_match(memory_cache()).await;
}

#[tokio::test]
async fn a_stored_404_ignores_if_none_match_redis() {
    let server = RedisServer::start();
    a_stored_404_ignores_if_none_match(server.cache("stored_404")).await;
}
