//! Bodies the cache does not buffer: a stream of unknown length, and a body over the
//! cache's `max_body_bytes`, pass through whole and in order, and are not stored.

use std::{
    pin::Pin,
    task::{Context, Poll, ready},
    time::Duration,
};

use axum::{
    Extension, Router,
    body::{Body, Bytes, HttpBody},
    extract::{Path, State},
    response::{IntoResponse, Response},
    routing::get,
};
use cache_page_runtime::{Cache, Store, cache_page};
use cache_page_tests::{Hits, TestServer, both_stores, fetch};
use tokio::sync::mpsc;

const CHUNKS: usize = 200;

/// What `poll_frame` returns for a body of `Bytes` and `axum::Error` (a frame, named
/// through the future that reads one).
type NextFrame = <http_body_util::combinators::Frame<'static, Body> as Future>::Output;

/// A body of unknown length whose chunks arrive on a channel, one frame each.
struct Trickle(mpsc::Receiver<Bytes>);

impl HttpBody for Trickle {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<NextFrame> {
        match ready!(self.0.poll_recv(cx)) {
            Some(chunk) => Pin::new(&mut Body::from(chunk)).poll_frame(cx),
            None => Poll::Ready(None),
        }
    }
}

fn chunk(i: usize) -> String {
    format!("chunk {i:04} of {CHUNKS}\n")
}

fn whole_stream() -> String {
    (0..CHUNKS).map(chunk).collect()
}

#[cache_page(timeout = 60)]
async fn stream(State(hits): State<Hits>) -> Response {
    hits.bump();
    let (tx, rx) = mpsc::channel(2);
    tokio::spawn(async move {
        for i in 0..CHUNKS {
            if tx.send(Bytes::from(chunk(i))).await.is_err() {
                return;
            }
            tokio::task::yield_now().await;
        }
    });
    Body::from_stream(Body::new(Trickle(rx)).into_data_stream()).into_response()
}

/// A body of known length: `n` bytes, none equal to its neighbour.
fn sized(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8).collect()
}

#[cache_page(timeout = 60)]
async fn sized_body(State(hits): State<Hits>, Path(n): Path<usize>) -> Vec<u8> {
    hits.bump();
    sized(n)
}

fn app(cache: &Cache, hits: &Hits) -> Router {
    Router::new()
        .route("/stream", get(stream))
        .route("/sized/{n}", get(sized_body))
        .with_state(hits.clone())
        .layer(Extension(cache.clone()))
}

async fn a_stream_passes_through_whole_and_is_not_stored(cache: Cache) {
    let hits = Hits::new();
    let app = app(&cache, &hits);
    for run in 1..=2 {
        let reply = fetch(&app, "/stream").await;
        assert!(!reply.is_hit(), "a stream was served from the cache");
        assert_eq!(
            reply.cache_status(),
            "cache-page; fwd=uri-miss; detail=streaming"
        );
        assert!(
            reply.text() == whole_stream(),
            "run {run}: the stream changed"
        );
        assert_eq!(hits.get(), run, "a stream was stored");
    }
}

async fn a_stream_over_a_socket_arrives_whole(cache: Cache) {
    let hits = Hits::new();
    let server = TestServer::start(app(&cache, &hits)).await;
    for run in 1..=2 {
        let reply = server.fetch("/stream").await;
        assert!(
            reply.text() == whole_stream(),
            "run {run}: the stream changed"
        );
        assert!(reply.cache_status().ends_with("detail=streaming"));
    }
    assert_eq!(hits.get(), 2);
}

both_stores!(
    a_stream_passes_through_whole_and_is_not_stored,
    a_stream_over_a_socket_arrives_whole,
);

/// Runs `async fn name(store)` on a new `MemoryStore` and on a Redis store.
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

async fn bodies_over_the_limit_pass_through_and_are_not_stored(store: impl Store) {
    let cache = Cache::builder(store)
        .timeout(Duration::from_secs(5))
        .max_body_bytes(1024)
        .build();
    let hits = Hits::new();
    let app = app(&cache, &hits);
    for n in [1025, 64 * 1024] {
        let uri = format!("/sized/{n}");
        let before = hits.get();
        for _ in 0..2 {
            let reply = fetch(&app, &uri).await;
            assert!(!reply.is_hit(), "{n} bytes were served from the cache");
            assert_eq!(
                reply.cache_status(),
                "cache-page; fwd=uri-miss; detail=too-large"
            );
            assert!(
                reply.body.as_ref() == sized(n).as_slice(),
                "{n} bytes changed"
            );
        }
        assert_eq!(hits.get(), before + 2, "{n} bytes were stored");
    }
    // The limit itself is stored.
    let at_limit = fetch(&app, "/sized/1024").await;
    assert!(at_limit.is_stored(), "{:?}", at_limit.cache_status());
    let hit = fetch(&app, "/sized/1024").await;
    assert!(hit.is_hit());
    assert!(hit.body.as_ref() == sized(1024).as_slice());
}

on_both_stores!(bodies_over_the_limit_pass_through_and_are_not_stored);

/// A page under `max_body_bytes` but larger than one shard of a `MemoryStore` is not
/// kept: its response says so instead of `stored`, and, refused again and again, it
/// neither opens the circuit breaker nor keeps other pages from being stored.
#[tokio::test]
async fn a_page_larger_than_the_memory_store_keeps_says_too_large() {
    // 8 MiB in two shards of 4 MiB: a 5 MiB page fits `max_body_bytes` (8 MiB), not a
    // shard.
    let store = cache_page_runtime::MemoryStore::builder()
        .max_bytes(8 << 20)
        .build();
    let cache = Cache::builder(store).max_body_bytes(8 << 20).build();
    let hits = Hits::new();
    let app = app(&cache, &hits);
    let large = 5 << 20;
    let uri = format!("/sized/{large}");
    for _ in 0..5 {
        let reply = fetch(&app, &uri).await;
        assert!(!reply.is_hit());
        assert_eq!(
            reply.cache_status(),
            "cache-page; fwd=uri-miss; detail=too-large"
        );
        assert!(reply.body.as_ref() == sized(large).as_slice());
    }
    assert_eq!(hits.get(), 5);
    let small = fetch(&app, "/sized/1024").await;
    assert!(small.is_stored(), "{:?}", small.cache_status());
    assert!(fetch(&app, "/sized/1024").await.is_hit());
}
