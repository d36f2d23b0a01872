//! Invalidations racing with reads, across two application instances sharing one
//! Redis: no request that starts after `invalidate_*` returns is served a page from
//! before it.
//!
//! The handler renders the current *generation*. The invalidator bumps the generation,
//! invalidates, and only then publishes the generation as done. A reader notes the
//! done generation before it sends its request, and the page it gets must be of that
//! generation or a later one. Between invalidations the readers make enough requests
//! for the stores to learn the pages' versions and keep the pages in process, so the
//! hits raced against are near-cache hits too (a `PING` each, counted on a private
//! server).

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use axum::{Extension, Router, extract::State, routing::get};
use cache_page_runtime::{Cache, RedisStore, cache_page, keys::path_key};
use cache_page_tests::{RedisServer, fetch, unique_namespace};

#[derive(Clone, Default)]
struct Generations {
    current: Arc<AtomicU64>,
    done: Arc<AtomicU64>,
}

#[cache_page(timeout = 600, key = path_key, group = "race")]
async fn page(State(generations): State<Generations>) -> String {
    generations.current.load(Ordering::SeqCst).to_string()
}

fn app(cache: Cache, generations: &Generations) -> Router {
    Router::new()
        .route("/race/{n}", get(page))
        .with_state(generations.clone())
        .layer(Extension(cache))
}

fn instance(url: &str, namespace: &str) -> Cache {
    let store = RedisStore::builder(url)
        .namespace(namespace)
        .command_timeout(Duration::from_secs(5))
        .build()
        .expect("a valid URL");
    Cache::builder(store)
        .timeout(Duration::from_secs(5))
        .build()
}

async fn race(invalidate: impl AsyncFn(&Cache, u64) + Copy) {
    let server = RedisServer::start();
    let namespace = unique_namespace("race");
    let generations = Generations::default();
    let (a, b) = (
        instance(server.url(), &namespace),
        instance(server.url(), &namespace),
    );
    let apps = [app(a.clone(), &generations), app(b.clone(), &generations)];
    let stop = Arc::new(AtomicBool::new(false));
    let requests = Arc::new(AtomicU64::new(0));
    let pings_before = ping_calls(&server).await;

    let readers: Vec<_> = (0..4)
        .map(|r| {
            let app = apps[r % 2].clone();
            let generations = generations.clone();
            let stop = stop.clone();
            let requests = requests.clone();
            tokio::spawn(async move {
                let mut checked = 0u64;
                while !stop.load(Ordering::SeqCst) {
                    let done = generations.done.load(Ordering::SeqCst);
                    let reply = fetch(&app, &format!("/race/{}", checked % 3)).await;
                    assert_eq!(reply.status, 200);
                    let served: u64 = reply.text().parse().expect("a generation");
                    assert!(
                        served >= done,
                        "served generation {served} after invalidation {done} returned"
                    );
                    checked += 1;
                    requests.fetch_add(1, Ordering::SeqCst);
                    // As a server between requests: a hit that never waits (on a
                    // store answering at once) must not starve the invalidator.
                    tokio::task::yield_now().await;
                }
                checked
            })
        })
        .collect();

    for generation in 1..=60u64 {
        // Enough requests at this generation for its pages to be learnt and kept.
        let target = requests.load(Ordering::SeqCst) + REQUESTS_BETWEEN;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while requests.load(Ordering::SeqCst) < target {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the readers stopped making progress"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        generations.current.store(generation, Ordering::SeqCst);
        let by = if generation % 2 == 0 { &a } else { &b };
        invalidate(by, generation).await;
        generations.done.store(generation, Ordering::SeqCst);
        tokio::task::yield_now().await;
    }
    stop.store(true, Ordering::SeqCst);
    let mut checked = 0;
    for reader in readers {
        checked += reader
            .await
            .expect("no reader saw a page from before an invalidation");
    }
    assert!(checked > 0);
    if let Some(before) = pings_before {
        let pings = ping_calls(&server).await.unwrap_or(0) - before;
        assert!(pings > 0, "no hit was served from a kept page");
    }
}

/// Requests the readers make between two invalidations.
const REQUESTS_BETWEEN: u64 = 40;

/// The `PING`s `server` has run, if it is this test's own (a shared one counts other
/// tests' commands).
async fn ping_calls(server: &RedisServer) -> Option<u64> {
    if !server.is_private() {
        return None;
    }
    let calls = server.cli().await.command_calls().await;
    Some(calls.get("ping").copied().unwrap_or(0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_page_from_before_a_group_invalidation_across_two_instances() {
    race(async |cache: &Cache, _| {
        cache.invalidate_group("race").await.expect("invalidated");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_page_from_before_a_path_invalidation_across_two_instances() {
    race(async |cache: &Cache, _| {
        for n in 0..3 {
            cache
                .invalidate_path(&format!("/race/{n}"))
                .await
                .expect("invalidated");
        }
    })
    .await;
}
