//! A stored response comes back exactly: repeated headers in order, custom content
//! types, any byte in the body, and `HEAD` served from a stored `GET`.

use axum::{
    Extension, Router,
    extract::State,
    http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use cache_page_runtime::{Cache, cache_page};
use cache_page_tests::{Hits, Reply, both_stores, fetch, request};

#[cache_page(timeout = 60)]
async fn many_headers(State(hits): State<Hits>) -> Response {
    hits.bump();
    let mut headers = HeaderMap::new();
    let multi = HeaderName::from_static("x-multi");
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/vnd.test+json; charset=utf-8"),
    );
    headers.append(multi.clone(), HeaderValue::from_static("first"));
    headers.insert(
        HeaderName::from_static("x-between"),
        HeaderValue::from_static("b"),
    );
    headers.append(multi.clone(), HeaderValue::from_static("second"));
    headers.append(multi, HeaderValue::from_static("third, with a comma"));
    headers.insert(
        HeaderName::from_static("x-empty"),
        HeaderValue::from_static(""),
    );
    headers.insert(
        HeaderName::from_static("x-latin1"),
        HeaderValue::from_bytes(b"caf\xe9").expect("obs-text is a valid header value"),
    );
    headers.insert(header::ETAG, HeaderValue::from_static("\"v1\""));
    (headers, "{\"ok\":true}").into_response()
}

fn all_bytes() -> Vec<u8> {
    (0..=255u8).collect()
}

/// A large body that is not a repetition of a short one.
fn large_body() -> Vec<u8> {
    let mut x: u32 = 0x1234_5678;
    (0..(1 << 20) + 7)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

#[cache_page(timeout = 60)]
async fn binary(State(hits): State<Hits>) -> impl IntoResponse {
    hits.bump();
    (
        [(header::CONTENT_TYPE, "application/octet-stream")],
        all_bytes(),
    )
}

#[cache_page(timeout = 60)]
async fn large(State(hits): State<Hits>) -> impl IntoResponse {
    hits.bump();
    (
        [(header::CONTENT_TYPE, "application/octet-stream")],
        large_body(),
    )
}

#[cache_page(timeout = 60)]
async fn empty(State(hits): State<Hits>) -> impl IntoResponse {
    hits.bump();
    ([("x-empty-body", "yes")], "")
}

#[cache_page(timeout = 60)]
async fn html(State(hits): State<Hits>) -> impl IntoResponse {
    let n = hits.bump();
    (
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        format!("<h1>page, run {n}</h1>"),
    )
}

fn app(cache: &Cache, hits: &Hits) -> Router {
    Router::new()
        .route("/headers", get(many_headers))
        .route("/binary", get(binary))
        .route("/large", get(large))
        .route("/empty", get(empty))
        .route("/html", get(html))
        .with_state(hits.clone())
        .layer(Extension(cache.clone()))
}

/// Requests `uri` twice; the second is a hit with the same body and status.
async fn miss_then_hit(app: &Router, hits: &Hits, uri: &str) -> (Reply, Reply) {
    let miss = fetch(app, uri).await;
    assert_eq!(miss.status, StatusCode::OK);
    let before = hits.get();
    let hit = fetch(app, uri).await;
    assert!(
        hit.is_hit(),
        "{uri} was not cached: {:?}",
        hit.cache_status()
    );
    assert_eq!(hits.get(), before, "{uri}: the handler ran on a hit");
    assert_eq!(hit.status, miss.status);
    assert!(
        hit.body == miss.body,
        "{uri}: the cached body differs from the handler's"
    );
    (miss, hit)
}

async fn repeated_headers_round_trip_in_order(cache: Cache) {
    let hits = Hits::new();
    let (miss, hit) = miss_then_hit(&app(&cache, &hits), &hits, "/headers").await;
    for reply in [&miss, &hit] {
        assert_eq!(
            reply.header_all("x-multi"),
            [&b"first"[..], b"second", b"third, with a comma"],
            "repeated header values lost or reordered"
        );
        assert_eq!(
            reply.header("content-type"),
            Some("application/vnd.test+json; charset=utf-8")
        );
        assert_eq!(reply.header_all("x-empty"), [b""]);
        assert_eq!(reply.header_all("x-latin1"), [b"caf\xe9"]);
        assert_eq!(reply.header("etag"), Some("\"v1\""));
        assert_eq!(reply.header("x-between"), Some("b"));
    }
}

async fn every_byte_value_round_trips(cache: Cache) {
    let hits = Hits::new();
    let (_, hit) = miss_then_hit(&app(&cache, &hits), &hits, "/binary").await;
    assert_eq!(hit.body.as_ref(), all_bytes().as_slice());
    assert_eq!(hit.header("content-type"), Some("application/octet-stream"));
}

async fn large_body_round_trips(cache: Cache) {
    let hits = Hits::new();
    let (_, hit) = miss_then_hit(&app(&cache, &hits), &hits, "/large").await;
    assert!(
        hit.body.as_ref() == large_body().as_slice(),
        "the large body came back changed"
    );
}

async fn empty_body_round_trips(cache: Cache) {
    let hits = Hits::new();
    let (_, hit) = miss_then_hit(&app(&cache, &hits), &hits, "/empty").await;
    assert!(hit.body.is_empty());
    assert_eq!(hit.header("x-empty-body"), Some("yes"));
}

async fn head_is_served_from_a_stored_get(cache: Cache) {
    let hits = Hits::new();
    let app = app(&cache, &hits);
    let stored = fetch(&app, "/html").await;
    let head = request(&app, Method::HEAD, "/html", &[]).await;
    assert_eq!(head.status, StatusCode::OK);
    assert!(
        head.is_hit(),
        "HEAD was not served from the stored GET: {:?}",
        head.cache_status()
    );
    assert!(head.body.is_empty(), "a HEAD response had a body");
    assert_eq!(head.header("content-type"), stored.header("content-type"));
    assert_eq!(hits.get(), 1);
}

async fn head_first_never_stores_a_truncated_page(cache: Cache) {
    let hits = Hits::new();
    let app = app(&cache, &hits);
    let head = request(&app, Method::HEAD, "/html", &[]).await;
    assert_eq!(head.status, StatusCode::OK);
    assert!(head.body.is_empty());
    // Whether or not the HEAD stored the page, a GET gets the whole body.
    let first_get = fetch(&app, "/html").await;
    assert!(
        first_get.text().starts_with("<h1>page, run "),
        "GET after HEAD: {:?}",
        first_get.text()
    );
    let next = fetch(&app, "/html").await;
    assert!(next.is_hit());
    assert_eq!(next.body, first_get.body);
}

both_stores!(
    repeated_headers_round_trip_in_order,
    every_byte_value_round_trips,
    large_body_round_trips,
    empty_body_round_trips,
    head_is_served_from_a_stored_get,
    head_first_never_stores_a_truncated_page,
);
