//! Redis failing never fails a request: pages are served uncached while Redis is
//! down, frozen or never was up, and caching resumes once it is back. The pages are
//! kept in process when Redis fails (a hit is one `PING`): a page kept is not served
//! while Redis cannot confirm it.

use std::time::Duration;

use axum::{Extension, Router, extract::State, routing::get};
use cache_page_runtime::{Cache, Error, RedisStore, cache_page};
use cache_page_tests::{
    Hits, RedisServer, eventually, fetch, free_port, unique_namespace, until_a_hit_is_one,
};

#[cache_page(timeout = 60, group = "g")]
async fn page(State(hits): State<Hits>) -> String {
    format!("run {}", hits.bump())
}

fn app(cache: &Cache, hits: &Hits) -> Router {
    Router::new()
        .route("/page", get(page))
        .with_state(hits.clone())
        .layer(Extension(cache.clone()))
}

/// A cache with the production defaults (store timeouts of 250 ms / 500 ms): these
/// tests are about what happens when they run out.
fn default_cache(url: &str, test: &str) -> Cache {
    let store = RedisStore::builder(url)
        .namespace(unique_namespace(test))
        .build()
        .expect("a valid URL");
    Cache::new(store)
}

/// Requests the page `n` times: each is answered by the handler, none from the cache.
async fn assert_served_uncached(app: &Router, hits: &Hits, n: usize) {
    for _ in 0..n {
        let before = hits.get();
        let reply = fetch(app, "/page").await;
        assert_eq!(
            reply.status, 200,
            "a request failed while Redis was unavailable"
        );
        assert!(!reply.is_hit());
        assert_eq!(
            reply.text(),
            format!("run {}", before + 1),
            "the handler did not answer"
        );
    }
}

/// Waits (at most 10 s) until the page is served from the cache again.
async fn assert_caching_resumes(app: &Router) {
    eventually(Duration::from_secs(10), "caching resumed", async || {
        let reply = fetch(app, "/page").await;
        assert_eq!(reply.status, 200);
        reply.is_hit()
    })
    .await;
}

#[tokio::test]
async fn requests_are_answered_while_redis_is_stopped() {
    let Some(mut server) =
        RedisServer::start_private("requests_are_answered_while_redis_is_stopped")
    else {
        return;
    };
    let cache = default_cache(server.url(), "stopped");
    let hits = Hits::new();
    let app = app(&cache, &hits);
    assert_eq!(fetch(&app, "/page").await.text(), "run 1");
    until_a_hit_is_one(&server, &app, "/page", "ping").await;

    server.stop();
    assert_served_uncached(&app, &hits, 3).await;
    assert!(
        cache.invalidate_group("g").await.is_err(),
        "an invalidation that did not happen said Ok"
    );

    server.restart();
    assert_caching_resumes(&app).await;
    until_a_hit_is_one(&server, &app, "/page", "ping").await;
    cache
        .invalidate_group("g")
        .await
        .expect("invalidations work again");
}

#[tokio::test]
async fn requests_are_answered_when_redis_is_down_at_start() {
    // Nothing listens on a port the OS just handed out and took back.
    let url = format!("redis://127.0.0.1:{}/", free_port());
    let cache = default_cache(&url, "down_at_start");
    let hits = Hits::new();
    let app = app(&cache, &hits);
    assert_served_uncached(&app, &hits, 3).await;
    assert!(cache.invalidate_group("g").await.is_err());
}

#[tokio::test]
async fn requests_are_answered_while_redis_is_frozen() {
    let Some(server) = RedisServer::start_private("requests_are_answered_while_redis_is_frozen")
    else {
        return;
    };
    let cache = default_cache(server.url(), "frozen");
    let hits = Hits::new();
    let app = app(&cache, &hits);
    assert_eq!(fetch(&app, "/page").await.text(), "run 1");
    until_a_hit_is_one(&server, &app, "/page", "ping").await;

    // SIGSTOP: the connection stays open and no command is answered.
    server.freeze();
    assert_served_uncached(&app, &hits, 2).await;
    match cache.invalidate_group("g").await {
        Err(Error::Timeout(_)) => {}
        other => panic!("an invalidation Redis did not answer gave {other:?}"),
    }

    server.resume();
    assert_caching_resumes(&app).await;
    until_a_hit_is_one(&server, &app, "/page", "ping").await;
}

/// A hit waiting for Redis to confirm a page kept in process is bounded by the cache's
/// timeout when that is the shorter one (here the store's commands may take a
/// minute): the request is answered, uncached, once the cache's timeout runs out.
#[tokio::test]
async fn a_frozen_redis_holds_a_hit_no_longer_than_the_cache_timeout() {
    let Some(server) = RedisServer::start_private("a_frozen_redis_holds_a_hit_no_longer") else {
        return;
    };
    let store = RedisStore::builder(server.url())
        .namespace(unique_namespace("frozen_short"))
        .command_timeout(Duration::from_secs(60))
        .build()
        .expect("a valid URL");
    let cache = Cache::builder(store)
        .timeout(Duration::from_millis(200))
        .build();
    let hits = Hits::new();
    let app = app(&cache, &hits);
    assert_eq!(fetch(&app, "/page").await.text(), "run 1");
    until_a_hit_is_one(&server, &app, "/page", "ping").await;

    server.freeze();
    // Half the store's command timeout: only the cache's own timer answers in time.
    tokio::time::timeout(
        Duration::from_secs(30),
        assert_served_uncached(&app, &hits, 2),
    )
    .await
    .expect("a hit waited for the store's command timeout, not the cache's");
    server.resume();
}

/// An invalidation Redis does not answer is an `Error::Timeout`, whichever timeout
/// runs out first: the store's command timeout (redis-rs gives up on the command)
/// or the cache's own (its timer fires). Its outcome is unknown; calling it again
/// once Redis answers is safe.
#[tokio::test]
async fn an_unanswered_invalidation_is_a_timeout() {
    let Some(server) = RedisServer::start_private("an_unanswered_invalidation_is_a_timeout") else {
        return;
    };
    let cache_with = |command: Duration, cache: Duration| {
        let store = RedisStore::builder(server.url())
            .namespace(unique_namespace("unanswered_invalidation"))
            .command_timeout(command)
            .build()
            .expect("a valid URL");
        Cache::builder(store).timeout(cache).build()
    };
    // The store's command timeout first (the cache's is far longer), then the cache's.
    let store_first = cache_with(Duration::from_millis(200), Duration::from_secs(30));
    let cache_first = cache_with(Duration::from_secs(60), Duration::from_millis(200));
    for cache in [&store_first, &cache_first] {
        // Connected before the freeze, so the command itself goes unanswered.
        cache.invalidate_group("g").await.expect("Redis is up");
    }

    server.freeze();
    for (cache, what) in [(&store_first, "store"), (&cache_first, "cache")] {
        let outcome = tokio::time::timeout(Duration::from_secs(30), cache.invalidate_group("g"))
            .await
            .unwrap_or_else(|_| panic!("no timeout ran out ({what}'s first)"));
        match outcome {
            Err(err @ Error::Timeout(after)) => {
                assert_eq!(after, Duration::from_millis(200), "{what}'s first");
                assert!(err.is_timeout());
                assert_eq!(err.to_string(), "cache store did not answer within 200ms");
            }
            other => panic!("{what}'s timeout first: {other:?}"),
        }
    }
    let tag = tokio::time::timeout(Duration::from_secs(30), store_first.invalidate_tag("t"))
        .await
        .expect("the store's command timeout ran out");
    assert!(matches!(tag, Err(Error::Timeout(_))), "{tag:?}");
    server.resume();

    // Once Redis answers again, calling it again is safe.
    eventually(
        Duration::from_secs(10),
        "invalidations work again",
        async || store_first.invalidate_group("g").await.is_ok(),
    )
    .await;
}

/// The request that probes a Redis that came back is served from it: the store does
/// not answer it with the failure of its last attempt to reconnect, made while Redis
/// was down, so caching resumes one cooldown after Redis returns, not two.
///
/// With versions tracked (the default) or not: either way, while the tracking
/// connection is down, lookups go down the store's own connection.
async fn the_first_probe_after_redis_returns_reaches_it(tracked: bool) {
    let Some(mut server) = RedisServer::start_private("the_first_probe_after_redis_returns") else {
        return;
    };
    let store = RedisStore::builder(server.url())
        .namespace(unique_namespace("first_probe"))
        .tracked_versions(tracked)
        .build()
        .expect("a valid URL");
    let cooldown = Duration::from_millis(300);
    let cache = Cache::builder(store).circuit_breaker(1, cooldown).build();
    let hits = Hits::new();
    let app = app(&cache, &hits);
    assert!(fetch(&app, "/page").await.is_stored());
    assert!(fetch(&app, "/page").await.is_hit());

    server.stop();
    // A first failure opens the breaker; then probes fail while Redis stays down.
    let mut failed_probes = 0;
    eventually(
        Duration::from_secs(10),
        "two probes failed while Redis was down",
        async || {
            let reply = fetch(&app, "/page").await;
            assert_eq!(reply.status, 200);
            if reply.cache_status().contains("detail=store-error") && !cache.is_available() {
                failed_probes += 1;
            }
            failed_probes >= 2
        },
    )
    .await;
    // Each failure starts a reconnection in the background, which fails at once while
    // Redis is down. Let the last one end before Redis returns, so that the store
    // holds a failure when the next probe comes (a store that answered the probe with
    // it, as before, fails this test; without the pause it might not).
    tokio::time::sleep(Duration::from_millis(500)).await;

    server.restart();
    let mut outcomes = Vec::new();
    eventually(Duration::from_secs(10), "caching resumed", async || {
        let reply = fetch(&app, "/page").await;
        assert_eq!(reply.status, 200);
        let status = reply.cache_status().to_owned();
        let resumed = reply.is_stored();
        if !status.contains("detail=store-unavailable") {
            outcomes.push(status);
        }
        resumed
    })
    .await;
    assert_eq!(
        outcomes.len(),
        1,
        "probes failed after Redis was back: {outcomes:?}"
    );
    assert!(cache.is_available());
}

#[tokio::test]
async fn the_first_probe_after_redis_returns_reaches_it_tracked() {
    the_first_probe_after_redis_returns_reaches_it(true).await;
}

#[tokio::test]
async fn the_first_probe_after_redis_returns_reaches_it_untracked() {
    the_first_probe_after_redis_returns_reaches_it(false).await;
}
