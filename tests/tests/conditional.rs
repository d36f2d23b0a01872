//! Conditional requests answered from the entry: `If-None-Match` (weak comparison)
//! and `If-Modified-Since` against the stored validators, ETags computed when the
//! handler gives none, and a handler's own `304` passed through and never stored.

use axum::{
    Extension, Router,
    extract::{Path, State},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use cache_page_runtime::{Cache, cache_page};
use cache_page_tests::{Hits, Reply, both_stores, fetch, fetch_with};

const MODIFIED: &str = "Wed, 21 Oct 2015 07:28:00 GMT";
const BEFORE: &str = "Wed, 21 Oct 2015 07:27:59 GMT";
const AFTER: &str = "Thu, 22 Oct 2015 07:28:00 GMT";

#[cache_page(timeout = 60)]
async fn tagged(State(hits): State<Hits>) -> Response {
    let n = hits.bump();
    ([(header::ETAG, "\"v1\"")], format!("tagged run {n}")).into_response()
}

/// No ETag of its own; the body is the path's last segment, whatever the run.
#[cache_page(timeout = 60)]
async fn untagged(State(hits): State<Hits>, Path(body): Path<String>) -> String {
    hits.bump();
    body
}

#[cache_page(timeout = 60)]
async fn dated(State(hits): State<Hits>) -> Response {
    let n = hits.bump();
    (
        [(header::LAST_MODIFIED, MODIFIED)],
        format!("dated run {n}"),
    )
        .into_response()
}

/// Answers a conditional request itself.
#[cache_page(timeout = 60)]
async fn own_304(State(hits): State<Hits>, headers: HeaderMap) -> Response {
    let n = hits.bump();
    if headers.contains_key(header::IF_NONE_MATCH) {
        return (StatusCode::NOT_MODIFIED, [(header::ETAG, "\"own\"")]).into_response();
    }
    ([(header::ETAG, "\"own\"")], format!("own run {n}")).into_response()
}

fn app(cache: &Cache, hits: &Hits) -> Router {
    Router::new()
        .route("/tagged", get(tagged))
        .route("/untagged/{body}", get(untagged))
        .route("/dated", get(dated))
        .route("/own", get(own_304))
        .with_state(hits.clone())
        .layer(Extension(cache.clone()))
}

fn assert_not_modified(reply: &Reply, etag: &str, what: &str) {
    assert_eq!(reply.status, StatusCode::NOT_MODIFIED, "{what}");
    assert!(reply.body.is_empty(), "{what}: a 304 had a body");
    assert_eq!(reply.header("etag"), Some(etag), "{what}: the 304's ETag");
    let cc = reply.header("cache-control").unwrap_or("");
    assert!(cc.contains("max-age="), "{what}: Cache-Control {cc:?}");
}

async fn matching_if_none_match_on_a_hit_is_a_304(cache: Cache) {
    let hits = Hits::new();
    let app = app(&cache, &hits);
    let stored = fetch(&app, "/tagged").await;
    assert_eq!(
        stored.header("etag"),
        Some("\"v1\""),
        "the handler's ETag was replaced"
    );
    for inm in ["\"v1\"", "W/\"v1\"", "\"other\", W/\"v1\"", "*"] {
        let reply = fetch_with(&app, "/tagged", &[("if-none-match", inm)]).await;
        assert!(reply.is_hit(), "{inm}: {:?}", reply.cache_status());
        assert_not_modified(&reply, "\"v1\"", inm);
    }
    let other = fetch_with(&app, "/tagged", &[("if-none-match", "\"v2\"")]).await;
    assert_eq!(other.status, StatusCode::OK, "a non-matching tag is a 200");
    assert!(other.is_hit());
    assert_eq!(other.text(), "tagged run 1");
    assert_eq!(hits.get(), 1);
}

async fn an_etag_is_computed_from_the_body(cache: Cache) {
    let hits = Hits::new();
    let app = app(&cache, &hits);
    let a = fetch(&app, "/untagged/same").await;
    let b = fetch(&app, "/untagged/same?other=page").await;
    let c = fetch(&app, "/untagged/different").await;
    let etag = a
        .header("etag")
        .expect("a stored response has an ETag")
        .to_owned();
    let hex = etag.trim_matches('"');
    assert!(
        etag.starts_with('"') && etag.ends_with('"') && hex.len() == 32,
        "not a quoted 128-bit hash in hex: {etag:?}"
    );
    assert!(hex.bytes().all(|b| b.is_ascii_hexdigit()), "{etag:?}");
    assert_eq!(
        b.header("etag"),
        Some(etag.as_str()),
        "same body, another ETag"
    );
    assert_ne!(
        c.header("etag"),
        Some(etag.as_str()),
        "another body, same ETag"
    );
    let hit = fetch(&app, "/untagged/same").await;
    assert!(hit.is_hit());
    assert_eq!(hit.header("etag"), Some(etag.as_str()));
    let conditional = fetch_with(&app, "/untagged/same", &[("if-none-match", &etag)]).await;
    assert_not_modified(&conditional, &etag, "computed ETag");
    assert_eq!(hits.get(), 3);
}

async fn if_modified_since_against_last_modified(cache: Cache) {
    let hits = Hits::new();
    let app = app(&cache, &hits);
    let stored = fetch(&app, "/dated").await;
    assert_eq!(stored.header("last-modified"), Some(MODIFIED));
    for since in [MODIFIED, AFTER] {
        let reply = fetch_with(&app, "/dated", &[("if-modified-since", since)]).await;
        assert_eq!(reply.status, StatusCode::NOT_MODIFIED, "since {since}");
        assert!(reply.body.is_empty());
        assert_eq!(reply.header("last-modified"), Some(MODIFIED));
    }
    let older = fetch_with(&app, "/dated", &[("if-modified-since", BEFORE)]).await;
    assert_eq!(older.status, StatusCode::OK, "an older date is a 200");
    assert_eq!(older.text(), "dated run 1");
    // If-None-Match, when present, decides alone (RFC 9110 §13.1.3).
    let both = [("if-none-match", "\"nope\""), ("if-modified-since", AFTER)];
    let reply = fetch_with(&app, "/dated", &both).await;
    assert_eq!(
        reply.status,
        StatusCode::OK,
        "If-Modified-Since overrode If-None-Match"
    );
    assert_eq!(hits.get(), 1);
}

async fn a_handlers_304_passes_through_and_is_not_stored(cache: Cache) {
    let hits = Hits::new();
    let app = app(&cache, &hits);
    let reply = fetch_with(&app, "/own", &[("if-none-match", "\"own\"")]).await;
    assert_eq!(reply.status, StatusCode::NOT_MODIFIED);
    assert!(reply.body.is_empty());
    assert_eq!(reply.header("cache-control"), Some("max-age=60"));
    assert!(
        reply.cache_status().ends_with("detail=not-modified"),
        "{:?}",
        reply.cache_status()
    );
    let plain = fetch(&app, "/own").await;
    assert!(!plain.is_hit(), "the handler's 304 was stored");
    assert_eq!(plain.status, StatusCode::OK);
    assert_eq!(plain.text(), "own run 2");
    assert_eq!(hits.get(), 2);
}

/// A miss whose request already matches the stored response: the response is
/// stored whole, and this request is answered `304` (serve.rs, `Miss::store`).
async fn a_conditional_miss_stores_the_page_and_answers_304(cache: Cache) {
    let hits = Hits::new();
    let app = app(&cache, &hits);
    let miss = fetch_with(&app, "/tagged", &[("if-none-match", "\"v1\"")]).await;
    assert_not_modified(&miss, "\"v1\"", "a conditional miss");
    assert!(miss.is_stored(), "{:?}", miss.cache_status());
    assert!(!miss.headers.contains_key("content-type"));
    let full = fetch(&app, "/tagged").await;
    assert!(
        full.is_hit(),
        "the page was not stored: {:?}",
        full.cache_status()
    );
    assert_eq!(full.status, StatusCode::OK);
    assert_eq!(full.text(), "tagged run 1", "the stored page lost its body");
    assert_eq!(hits.get(), 1);
}

both_stores!(
    matching_if_none_match_on_a_hit_is_a_304,
    an_etag_is_computed_from_the_body,
    if_modified_since_against_last_modified,
    a_handlers_304_passes_through_and_is_not_stored,
    a_conditional_miss_stores_the_page_and_answers_304,
);
