//! A store that stops answering opens the circuit breaker: requests are then served
//! uncached without calling the store, and the breaker closes by itself once the store
//! answers again.

use std::time::Duration;

use axum::{Extension, Router, extract::State, routing::get};
use cache_page_runtime::{Cache, RedisStore, cache_page};
use cache_page_tests::{Hits, RedisServer, eventually, fetch, unique_namespace};

#[cache_page(timeout = 60)]
async fn page(State(hits): State<Hits>) -> String {
    format!("run {}", hits.bump())
}

fn app(cache: &Cache, hits: &Hits) -> Router {
    Router::new()
        .route("/page", get(page))
        .with_state(hits.clone())
        .layer(Extension(cache.clone()))
}

#[tokio::test]
async fn a_frozen_redis_opens_the_breaker_and_a_resumed_one_closes_it() {
    let Some(server) = RedisServer::start_private("breaker") else {
        return;
    };
    let store = RedisStore::builder(server.url())
        .namespace(unique_namespace("breaker"))
        .command_timeout(Duration::from_millis(100))
        .build()
        .expect("a valid URL");
    let cache = Cache::builder(store)
        .timeout(Duration::from_millis(200))
        .circuit_breaker(2, Duration::from_millis(300))
        .build();
    let hits = Hits::new();
    let app = app(&cache, &hits);
    fetch(&app, "/page").await;
    assert!(fetch(&app, "/page").await.is_hit());
    assert!(cache.is_available());

    server.freeze();
    // Two timeouts open the breaker; every request is still answered by the handler.
    for _ in 0..2 {
        let reply = fetch(&app, "/page").await;
        assert_eq!(reply.status, 200);
        assert!(
            reply.cache_status().contains("detail=store-error"),
            "{}",
            reply.cache_status()
        );
    }
    assert!(
        !cache.is_available(),
        "two failures did not open the breaker"
    );
    // While open, the store is not called at all: the request says so.
    let reply = fetch(&app, "/page").await;
    assert_eq!(reply.status, 200);
    assert!(
        reply.cache_status().contains("detail=store-unavailable"),
        "{}",
        reply.cache_status()
    );

    server.resume();
    eventually(
        Duration::from_secs(10),
        "the breaker closed and caching resumed",
        async || fetch(&app, "/page").await.is_hit(),
    )
    .await;
    assert!(cache.is_available());
}
