//! A `HEAD` miss stores the page only when the handler produced the whole body (axum
//! strips it after the cache): a handler that leaves the body out for `HEAD` must not
//! leave an empty page for the `GET`s that follow.

use axum::{
    Extension, Router,
    extract::State,
    http::{Method, StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use cache_page_runtime::{Cache, cache_page};
use cache_page_tests::{Hits, both_stores, fetch, request};

#[cache_page(timeout = 60)]
async fn full(State(hits): State<Hits>) -> String {
    format!("full body, run {}", hits.bump())
}

/// Leaves the body out for `HEAD`, as handlers that know axum strips it may.
#[cache_page(timeout = 60)]
async fn lazy(State(hits): State<Hits>, method: Method) -> Response {
    let n = hits.bump();
    if method == Method::HEAD {
        return ([(header::CONTENT_TYPE, "text/plain")], "").into_response();
    }
    format!("lazy body, run {n}").into_response()
}

/// Leaves the body out for `HEAD` but announces its length.
#[cache_page(timeout = 60)]
async fn announced(State(hits): State<Hits>, method: Method) -> Response {
    let n = hits.bump();
    let body = format!("announced body, run {n}");
    if method == Method::HEAD {
        return ([(header::CONTENT_LENGTH, body.len().to_string())], ()).into_response();
    }
    body.into_response()
}

fn app(cache: &Cache, hits: &Hits) -> Router {
    Router::new()
        .route("/full", get(full))
        .route("/lazy", get(lazy))
        .route("/announced", get(announced))
        .with_state(hits.clone())
        .layer(Extension(cache.clone()))
}

async fn a_head_miss_with_the_whole_body_stores_the_page(cache: Cache) {
    let hits = Hits::new();
    let app = app(&cache, &hits);
    let head = request(&app, Method::HEAD, "/full", &[]).await;
    assert_eq!(head.status, StatusCode::OK);
    assert!(head.body.is_empty(), "a HEAD response had a body");
    assert_eq!(
        head.cache_status(),
        "cache-page; fwd=uri-miss; stored; ttl=60"
    );
    let get = fetch(&app, "/full").await;
    assert!(
        get.is_hit(),
        "the HEAD did not store the page: {:?}",
        get.cache_status()
    );
    assert_eq!(get.text(), "full body, run 1");
    let again = request(&app, Method::HEAD, "/full", &[]).await;
    assert!(again.is_hit());
    assert!(again.body.is_empty());
    assert_eq!(
        again.header("content-length"),
        Some("full body, run 1".len().to_string().as_str())
    );
    assert_eq!(hits.get(), 1);
}

async fn a_head_miss_without_the_body_stores_nothing(cache: Cache) {
    let hits = Hits::new();
    let app = app(&cache, &hits);
    for (uri, body) in [
        ("/lazy", "lazy body, run"),
        ("/announced", "announced body, run"),
    ] {
        let before = hits.get();
        let head = request(&app, Method::HEAD, uri, &[]).await;
        assert_eq!(head.status, StatusCode::OK);
        assert_eq!(
            head.cache_status(),
            "cache-page; fwd=uri-miss; detail=truncated",
            "{uri}"
        );
        let get = fetch(&app, uri).await;
        assert!(!get.is_hit(), "{uri}: an empty HEAD answer was stored");
        assert_eq!(get.text(), format!("{body} {}", before + 2));
        let next = fetch(&app, uri).await;
        assert!(next.is_hit(), "{uri}: {:?}", next.cache_status());
        assert_eq!(next.body, get.body);
        assert_eq!(hits.get(), before + 2);
    }
}

both_stores!(
    a_head_miss_with_the_whole_body_stores_the_page,
    a_head_miss_without_the_body_stores_nothing,
);
