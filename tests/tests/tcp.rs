//! The cache over a real socket: `axum::serve` on 127.0.0.1 and an HTTP/1.1 client.

use axum::{
    Extension, Router,
    extract::State,
    http::{HeaderMap, HeaderValue, header},
    response::{IntoResponse, Response},
    routing::get,
};
use cache_page_runtime::{Cache, cache_page};
use cache_page_tests::{Hits, TestServer, both_stores};

#[cache_page(timeout = 60, group = "tcp")]
async fn page(State(hits): State<Hits>) -> Response {
    let n = hits.bump();
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.append("x-multi", HeaderValue::from_static("a"));
    headers.append("x-multi", HeaderValue::from_static("b"));
    (headers, format!("over tcp, run {n}")).into_response()
}

async fn hit_over_a_real_socket(cache: Cache) {
    let hits = Hits::new();
    let app = Router::new()
        .route("/page", get(page))
        .with_state(hits.clone())
        .layer(Extension(cache.clone()));
    let server = TestServer::start(app).await;

    let miss = server.fetch("/page").await;
    assert_eq!(miss.status, 200);
    assert_eq!(miss.text(), "over tcp, run 1");
    assert!(!miss.is_hit());

    let hit = server.fetch("/page").await;
    assert!(
        hit.is_hit(),
        "Cache-Status over the wire: {:?}",
        hit.cache_status()
    );
    assert_eq!(hit.body, miss.body);
    assert_eq!(
        hit.header("content-length"),
        Some(miss.body.len().to_string().as_str())
    );
    assert_eq!(
        hit.header("content-type"),
        Some("text/plain; charset=utf-8")
    );
    assert_eq!(hit.header_all("x-multi"), [b"a", b"b"]);
    assert!(hit.header("age").is_some());
    assert_eq!(hits.get(), 1);

    let head = server.request("HEAD", "/page", &[]).await;
    assert_eq!(head.status, 200);
    assert!(head.is_hit());
    assert_eq!(hits.get(), 1);

    cache.invalidate_group("tcp").await.expect("invalidated");
    let after = server.fetch("/page").await;
    assert!(!after.is_hit());
    assert_eq!(after.text(), "over tcp, run 2");
}

both_stores!(hit_over_a_real_socket);
