//! Concurrent misses of one page run its handler once per process; a leader that
//! panics or is cancelled never leaves its followers waiting.
//!
//! The handlers here wait until every request of the test has arrived (counted by a
//! middleware that runs before the cache), so that all of them are in flight at once
//! whatever the machine's speed: no timing is assumed.

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use axum::{
    Extension, Router,
    extract::{Request, State},
    middleware::{self, Next},
    response::Response,
    routing::get,
};
use cache_page_runtime::{Cache, MemoryStore, cache_page};
use cache_page_tests::{Hits, RedisServer, fetch, patient_cache};

#[derive(Clone, Default)]
struct Load {
    runs: Hits,
    arrived: Arc<AtomicUsize>,
    expected: usize,
    /// The first run panics when set.
    panic_first: bool,
}

impl Load {
    fn new(expected: usize) -> Load {
        Load {
            expected,
            ..Load::default()
        }
    }

    /// Waits (at most 20 s) until every request has arrived.
    async fn all_arrived(&self) {
        for _ in 0..20_000 {
            if self.arrived.load(Ordering::SeqCst) >= self.expected {
                return;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        panic!(
            "only {} of {} requests arrived",
            self.arrived.load(Ordering::SeqCst),
            self.expected
        );
    }
}

#[cache_page(timeout = 60)]
async fn slow_page(State(load): State<Load>) -> String {
    let run = load.runs.bump();
    load.all_arrived().await;
    if load.panic_first && run == 1 {
        panic!("the leader's handler failed");
    }
    "the page".to_owned()
}

async fn count_arrival(State(load): State<Load>, req: Request, next: Next) -> Response {
    load.arrived.fetch_add(1, Ordering::SeqCst);
    next.run(req).await
}

fn app(cache: &Cache, load: &Load) -> Router {
    Router::new()
        .route("/cold", get(slow_page))
        .layer(middleware::from_fn_with_state(load.clone(), count_arrival))
        .with_state(load.clone())
        .layer(Extension(cache.clone()))
}

/// Sends `n` concurrent requests spread over `apps`; returns each one's outcome.
async fn burst(apps: &[Router], n: usize) -> Vec<Result<(u16, String), tokio::task::JoinError>> {
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let app = apps[i % apps.len()].clone();
            tokio::spawn(async move {
                let reply = fetch(&app, "/cold").await;
                (reply.status.as_u16(), reply.text())
            })
        })
        .collect();
    let mut out = Vec::with_capacity(n);
    for task in tasks {
        out.push(task.await);
    }
    out
}

fn assert_all_served(outcomes: &[Result<(u16, String), tokio::task::JoinError>]) {
    for outcome in outcomes {
        let (status, body) = outcome.as_ref().expect("no request failed");
        assert_eq!((*status, body.as_str()), (200, "the page"));
    }
}

async fn cold_key_runs_the_handler_once(cache: Cache) {
    let load = Load::new(1000);
    let outcomes = burst(&[app(&cache, &load)], 1000).await;
    assert_all_served(&outcomes);
    assert_eq!(
        load.runs.get(),
        1,
        "1,000 concurrent misses ran the handler more than once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_misses_run_the_handler_once_in_memory() {
    cold_key_runs_the_handler_once(patient_cache(MemoryStore::new())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_misses_run_the_handler_once_on_redis() {
    let server = RedisServer::start();
    cold_key_runs_the_handler_once(server.cache("single_flight")).await;
}

/// The same burst with single flight turned off runs the handler for every request:
/// the test above would fail without the feature. (One thread: with two, a handler
/// could finish between a request's arrival and its lookup, which then hits.)
#[tokio::test]
async fn without_single_flight_every_miss_runs_the_handler() {
    let cache = Cache::builder(MemoryStore::new())
        .timeout(Duration::from_secs(5))
        .single_flight(false)
        .build();
    let load = Load::new(50);
    let outcomes = burst(&[app(&cache, &load)], 50).await;
    assert_all_served(&outcomes);
    assert_eq!(load.runs.get(), 50);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_leader_releases_its_followers_and_stores_nothing() {
    let cache = patient_cache(MemoryStore::new());
    let load = Load {
        panic_first: true,
        ..Load::new(20)
    };
    let outcomes = burst(&[app(&cache, &load)], 20).await;
    let panicked = outcomes.iter().filter(|o| o.is_err()).count();
    assert_eq!(panicked, 1, "only the leader's request fails");
    assert_all_served(
        &outcomes
            .into_iter()
            .filter(Result::is_ok)
            .collect::<Vec<_>>(),
    );
    // The followers ran the handler themselves, once (one of them led again).
    assert_eq!(load.runs.get(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_leader_releases_its_followers() {
    let cache = patient_cache(MemoryStore::new());
    // Two requests expected, but the first is cancelled before the second arrives: the
    // leader's handler is still waiting when it is dropped.
    let load = Load::new(2);
    let app = app(&cache, &load);
    let leader = {
        let app = app.clone();
        tokio::spawn(async move { fetch(&app, "/cold").await })
    };
    while load.runs.get() == 0 {
        tokio::task::yield_now().await;
    }
    leader.abort(); // the client went away mid-response
    assert!(leader.await.is_err_and(|e| e.is_cancelled()));
    let reply = tokio::time::timeout(Duration::from_secs(30), fetch(&app, "/cold"))
        .await
        .expect("a request after a cancelled leader does not hang");
    assert_eq!(
        (reply.status.as_u16(), reply.text().as_str()),
        (200, "the page")
    );
    assert_eq!(
        load.runs.get(),
        2,
        "nothing partial was stored by the cancelled leader"
    );
}

/// Two application instances (two stores, two connections, two flight maps) sharing
/// one Redis, with the lock across instances: the handler runs once in all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_with_the_lock_run_the_handler_once() {
    let server = RedisServer::start();
    let namespace = cache_page_tests::unique_namespace("lock");
    let instance = || {
        let store = cache_page_runtime::RedisStore::builder(server.url())
            .namespace(namespace.clone())
            .command_timeout(Duration::from_secs(5))
            .build()
            .expect("a valid URL");
        Cache::builder(store)
            .timeout(Duration::from_secs(5))
            .lock_across_instances(Duration::from_secs(20))
            .build()
    };
    let load = Load::new(400);
    let apps = [app(&instance(), &load), app(&instance(), &load)];
    let outcomes = burst(&apps, 400).await;
    assert_all_served(&outcomes);
    assert_eq!(
        load.runs.get(),
        1,
        "the lock let two instances run the handler"
    );
}
