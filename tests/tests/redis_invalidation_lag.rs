//! `RedisStoreBuilder::invalidation_lag`: hits on a page kept in process pass at once
//! while a `PING` sent at most the lag before them has been answered, so they send
//! nothing to Redis; yet the process that invalidates sees its own invalidation at
//! once, another process's invalidation is applied as soon as Redis's message about it
//! arrives (not a lag later), and a server that stops answering stops the kept pages.

use std::{collections::BTreeMap, time::Duration};

use axum::{Extension, Router, extract::State, routing::get};
use cache_page_runtime::{Cache, RedisStore, cache_page, keys::path_key};
use cache_page_tests::{
    Hits, RedisServer, eventually, fetch, patient_cache, unique_namespace, until_a_hit_runs,
};

#[cache_page(timeout = 60, key = path_key, group = "g", prefix = "p")]
async fn page(State(hits): State<Hits>) -> String {
    format!("run {}", hits.bump())
}

const URI: &str = "/page";

/// Far longer than any test: within it, only the first hit of a kept page (or one
/// after a write of this process) sends a `PING`.
const LONG_LAG: Duration = Duration::from_secs(600);

fn app(cache: &Cache, hits: &Hits) -> Router {
    Router::new()
        .route("/page", get(page))
        .with_state(hits.clone())
        .layer(Extension(cache.clone()))
}

fn lag_store(url: &str, namespace: &str, lag: Duration, command_timeout: Duration) -> RedisStore {
    RedisStore::builder(url)
        .namespace(namespace)
        .command_timeout(command_timeout)
        .connect_timeout(Duration::from_secs(5))
        .invalidation_lag(lag)
        .build()
        .expect("a valid URL")
}

/// A page kept in process, on a private server: the store (with `lag` and
/// `command_timeout`), a cache on it that waits up to `cache_timeout`, its app, and the
/// app's handler runs. Its hits send nothing to Redis once this returns.
struct Kept {
    server: RedisServer,
    namespace: String,
    store: RedisStore,
    cache: Cache,
    app: Router,
    hits: Hits,
}

async fn a_kept_page(
    test: &str,
    lag: Duration,
    command_timeout: Duration,
    cache_timeout: Duration,
) -> Option<Kept> {
    let server = RedisServer::start_private(test)?;
    let namespace = unique_namespace(test);
    let hits = Hits::new();
    let store = lag_store(server.url(), &namespace, lag, command_timeout);
    let cache = Cache::builder(store.clone()).timeout(cache_timeout).build();
    let app = app(&cache, &hits);
    assert_eq!(fetch(&app, URI).await.text(), "run 1");
    assert_eq!(until_a_hit_sends_nothing(&server, &app).await, "run 1");
    Some(Kept {
        server,
        namespace,
        store,
        cache,
        app,
        hits,
    })
}

/// The patient timeouts of most tests (see `patient_cache`).
const PATIENT: Duration = Duration::from_secs(5);

/// Fetches until a hit makes the server run no command at all (at most 10 s): the
/// page is kept in process and a recent enough `PING` is answered.
async fn until_a_hit_sends_nothing(server: &RedisServer, app: &Router) -> String {
    until_a_hit_runs(server, app, URI, &BTreeMap::new()).await
}

#[tokio::test]
async fn hits_within_the_lag_send_nothing_to_redis() {
    let Some(Kept {
        server,
        store,
        app,
        hits,
        ..
    }) = a_kept_page("lag_hits", LONG_LAG, PATIENT, PATIENT).await
    else {
        return;
    };
    let before = store.round_trips();
    let commands = server
        .commands_during(async || {
            for _ in 0..20 {
                let hit = fetch(&app, URI).await;
                assert!(hit.is_hit());
                assert_eq!(hit.text(), "run 1");
            }
        })
        .await;
    assert!(
        commands.is_empty(),
        "20 hits within the lag ran {commands:?}"
    );
    assert_eq!(store.round_trips(), before);
    assert_eq!(hits.get(), 1);
}

/// The process that invalidates reads its own invalidation: each way of invalidating
/// is followed at once, on the same runtime, by a request that must not be a hit.
#[tokio::test]
async fn the_process_that_invalidates_sees_it_at_once() {
    let Some(Kept {
        server, cache, app, ..
    }) = a_kept_page("lag_own_writes", LONG_LAG, PATIENT, PATIENT).await
    else {
        return;
    };
    let ways = ["a group", "a group, softly", "a URL", "a key"];
    for (n, what) in ways.into_iter().enumerate() {
        if n > 0 {
            let run = format!("run {}", n + 1);
            assert_eq!(until_a_hit_sends_nothing(&server, &app).await, run);
        }
        // Before it returns, the invalidation waits for a PING on the tracking
        // connection: Redis's message about it has then been read, wherever the
        // network would have held it.
        let commands = server
            .commands_during(async || match n {
                0 => drop(cache.invalidate_group("g").await.expect("invalidated")),
                1 => drop(cache.invalidate_group_soft("g").await.expect("invalidated")),
                2 => drop(cache.invalidate_url(URI).await.expect("invalidated")),
                _ => {
                    let removed = cache.invalidate_key("p", &["g"], URI).await;
                    assert!(removed.expect("invalidated"), "the page was in Redis");
                }
            })
            .await;
        assert_eq!(
            commands.get("ping"),
            Some(&1),
            "invalidating {what} sent {commands:?}"
        );
        let after = fetch(&app, URI).await;
        // A soft invalidation may serve the old page as stale while it refreshes.
        if what != "a group, softly" {
            assert!(
                !after.is_hit(),
                "after invalidating {what}, this process served the page it replaced"
            );
            assert_eq!(after.text(), format!("run {}", n + 2));
        }
        eventually(
            Duration::from_secs(10),
            "the new page is served",
            async || fetch(&app, URI).await.text() == format!("run {}", n + 2),
        )
        .await;
    }
}

/// Another process's invalidation is applied when Redis's message about it arrives,
/// not once the lag has run out: with a lag of ten minutes, the page still changes
/// within seconds.
#[tokio::test]
async fn another_process_s_invalidation_does_not_wait_for_the_lag() {
    let Some(Kept {
        server,
        namespace,
        app: b,
        hits,
        ..
    }) = a_kept_page("lag_other_process", LONG_LAG, PATIENT, PATIENT).await
    else {
        return;
    };
    let a = patient_cache(lag_store(server.url(), &namespace, Duration::ZERO, PATIENT));
    a.invalidate_group("g").await.expect("invalidated");
    eventually(
        Duration::from_secs(10),
        "the other process's invalidation reached this one",
        async || fetch(&b, URI).await.text() == "run 2",
    )
    .await;
    assert_eq!(hits.get(), 2);
}

/// A server that stops answering stops the kept pages once the lag and a `PING`'s
/// timeout have run out: requests are then served by the handler, uncached.
#[tokio::test]
async fn a_frozen_server_stops_the_kept_pages() {
    let short = Duration::from_millis(200);
    let Some(Kept {
        server, app, hits, ..
    }) = a_kept_page("lag_frozen", short, short, Duration::from_millis(500)).await
    else {
        return;
    };
    assert_eq!(hits.get(), 1);
    server.freeze();
    let mut served_uncached = false;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while tokio::time::Instant::now() < deadline {
        let response = fetch(&app, URI).await;
        if !response.is_hit() {
            assert_eq!(
                response.text(),
                "run 2",
                "a page served uncached runs the handler"
            );
            served_uncached = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.resume();
    assert!(
        served_uncached,
        "the kept page was still served 20 s after the server froze"
    );
}
