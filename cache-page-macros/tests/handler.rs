//! What an expanded handler does when it serves requests: the body runs on a miss
//! only, every extractor runs on every request, and the cache sees the request after
//! the other extractors (so a `DoNotCache` they set is honoured).

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};

use axum::{
    Extension, Router,
    body::Body,
    extract::{FromRequestParts, Path},
    http::{Request, StatusCode, request::Parts},
    routing::get,
};
use cache_page_runtime::{Cache, DoNotCache, cache_page};
use tower::ServiceExt as _;

/// Sends `method path` with `body` to `app` and returns the status and body.
async fn send(app: &Router, method: &str, path: &str, body: &str) -> (StatusCode, String) {
    let request = Request::builder()
        .method(method)
        .uri(path)
        .body(Body::from(body.to_owned()));
    let response = app
        .clone()
        .oneshot(request.expect("valid request"))
        .await
        .expect("infallible");
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .expect("body");
    (status, String::from_utf8(bytes.to_vec()).expect("utf-8"))
}

/// `app` with a cache of its own, so tests do not share entries.
fn isolated(app: Router) -> Router {
    app.layer(Extension(Cache::memory()))
}

static COUNTED_EXTRACTOR: AtomicUsize = AtomicUsize::new(0);
static COUNTED_BODY: AtomicUsize = AtomicUsize::new(0);

/// An extractor that counts how often it runs.
struct Counted;

impl<S: Send + Sync> FromRequestParts<S> for Counted {
    type Rejection = StatusCode;

    async fn from_request_parts(_: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        COUNTED_EXTRACTOR.fetch_add(1, SeqCst);
        Ok(Counted)
    }
}

#[cache_page(timeout = 60)]
async fn counted(_: Counted, Path(id): Path<u32>) -> String {
    COUNTED_BODY.fetch_add(1, SeqCst);
    format!("item {id}")
}

#[tokio::test]
async fn body_runs_once_extractors_every_time() {
    let app = isolated(Router::new().route("/items/{id}", get(counted)));
    assert_eq!(
        send(&app, "GET", "/items/7", "").await,
        (StatusCode::OK, "item 7".into())
    );
    assert_eq!(
        send(&app, "GET", "/items/7", "").await,
        (StatusCode::OK, "item 7".into())
    );
    assert_eq!(COUNTED_BODY.load(SeqCst), 1);
    assert_eq!(COUNTED_EXTRACTOR.load(SeqCst), 2);
}

static BYPASSED_BODY: AtomicUsize = AtomicUsize::new(0);

/// An extractor that turns the cache off for the request, as an auth guard might.
struct Bypass;

impl<S: Send + Sync> FromRequestParts<S> for Bypass {
    type Rejection = StatusCode;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts.extensions.insert(DoNotCache);
        Ok(Bypass)
    }
}

#[cache_page(timeout = 60)]
async fn bypassed(_: Bypass, Path(id): Path<u32>) -> String {
    BYPASSED_BODY.fetch_add(1, SeqCst);
    format!("item {id}")
}

#[tokio::test]
async fn do_not_cache_set_by_an_earlier_extractor_is_seen() {
    let app = isolated(Router::new().route("/items/{id}", get(bypassed)));
    send(&app, "GET", "/items/1", "").await;
    send(&app, "GET", "/items/1", "").await;
    assert_eq!(BYPASSED_BODY.load(SeqCst), 2);
}

static NO_ARGS_BODY: AtomicUsize = AtomicUsize::new(0);

#[cache_page(timeout = 60)]
async fn no_args() -> &'static str {
    NO_ARGS_BODY.fetch_add(1, SeqCst);
    "hello"
}

#[tokio::test]
async fn handler_without_arguments() {
    let app = isolated(Router::new().route("/", get(no_args)));
    assert_eq!(
        send(&app, "GET", "/", "").await,
        (StatusCode::OK, "hello".into())
    );
    assert_eq!(
        send(&app, "GET", "/", "").await,
        (StatusCode::OK, "hello".into())
    );
    assert_eq!(NO_ARGS_BODY.load(SeqCst), 1);
}

#[cache_page(timeout = 60)]
async fn echo(Path(id): Path<u32>, body: String) -> String {
    format!("{id}: {body}")
}

#[tokio::test]
async fn body_extractor_last_still_gets_the_body() {
    let app = isolated(Router::new().route("/echo/{id}", get(echo).post(echo)));
    assert_eq!(
        send(&app, "POST", "/echo/1", "a").await,
        (StatusCode::OK, "1: a".into())
    );
    assert_eq!(
        send(&app, "POST", "/echo/1", "b").await,
        (StatusCode::OK, "1: b".into())
    );
}

#[cache_page(timeout = 60)]
async fn fallible(Path(raw): Path<String>) -> Result<String, StatusCode> {
    let n: u32 = raw.parse().map_err(|_| StatusCode::BAD_REQUEST)?;
    Ok(format!("{n}"))
}

#[tokio::test]
async fn question_mark_returns_the_error() {
    let app = isolated(Router::new().route("/{raw}", get(fallible)));
    assert_eq!(
        send(&app, "GET", "/12", "").await,
        (StatusCode::OK, "12".into())
    );
    assert_eq!(send(&app, "GET", "/x", "").await.0, StatusCode::BAD_REQUEST);
}
