//! `grace`: a page past its timeout is served at once while one background request
//! refreshes it (stale-while-revalidate), and goes on being served while refreshes
//! fail (stale-if-error).
//!
//! The refresh's handler is held on a semaphore the test opens, so "served at once"
//! is shown without timing: the stale page comes back while the handler cannot run.
//! Across two instances with the lock, one refresh runs in all.

use std::time::Duration;

use axum::{
    Extension, Router, extract::State, http::StatusCode, response::IntoResponse, routing::get,
};
use cache_page_runtime::{Cache, RedisStore, cache_page, hash_key};
use cache_page_tests::{
    Gated as Origin, RedisServer, Reply, both_stores, eventually, fetch, memory_cache,
};

#[cache_page(timeout = 1, grace = 30)]
async fn refreshed(State(origin): State<Origin>) -> String {
    let n = origin.run().await;
    format!("run {n}")
}

/// Fresh for a second the first time, then for an hour: a refreshed page does not go
/// stale again while a test counts the runs.
fn a_second_then_an_hour(head: &axum::http::response::Parts) -> u64 {
    match head.headers.get("x-run") {
        Some(run) if run == "1" => 1,
        _ => 3600,
    }
}

/// [`refreshed`], but a refresh is fresh for an hour.
#[cache_page(timeout = a_second_then_an_hour, grace = 30)]
async fn refreshed_once(State(origin): State<Origin>) -> impl IntoResponse {
    let n = origin.run().await;
    ([("x-run", n.to_string())], format!("run {n}"))
}

/// Fails every run after the first.
#[cache_page(timeout = 1, grace = 30)]
async fn failing(State(origin): State<Origin>) -> impl IntoResponse {
    match origin.runs.bump() {
        1 => (StatusCode::OK, "good run 1".to_owned()),
        n => (StatusCode::INTERNAL_SERVER_ERROR, format!("failed run {n}")),
    }
}

fn app(cache: &Cache, origin: &Origin) -> Router {
    Router::new()
        .route("/refreshed", get(refreshed))
        .route("/failing", get(failing))
        .route("/refreshed-once", get(refreshed_once))
        .with_state(origin.clone())
        .layer(Extension(cache.clone()))
}

/// Requests `path` until its page is stale and a refresh started (the stored page is
/// served meanwhile).
async fn until_a_refresh_started(app: &Router, origin: &Origin, path: &str) {
    eventually(
        PATIENCE,
        "the page went stale and a refresh started",
        async || {
            assert_served(&fetch(app, path).await, "run 1");
            origin.runs.get() == 2
        },
    )
    .await;
}

/// The `ttl` of a hit: the timeout less the age; 0 or less once stale.
fn ttl(reply: &Reply) -> i64 {
    let status = reply.cache_status();
    status
        .strip_prefix("cache-page; hit; ttl=")
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("not a hit: {status:?}"))
}

fn assert_served(reply: &Reply, body: &str) {
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(reply.text(), body);
}

const PATIENCE: Duration = Duration::from_secs(10);

async fn a_stale_page_is_served_while_one_request_refreshes_it(cache: Cache) {
    let origin = Origin::new();
    let app = app(&cache, &origin);
    let first = fetch(&app, "/refreshed").await;
    assert_eq!(
        first.cache_status(),
        "cache-page; fwd=uri-miss; stored; ttl=1"
    );
    assert_served(&first, "run 1");

    // Until the page goes stale, then while its refresh is held: the stored page.
    until_a_refresh_started(&app, &origin, "/refreshed").await;
    for _ in 0..5 {
        let stale = fetch(&app, "/refreshed").await;
        assert_served(&stale, "run 1");
        assert!(ttl(&stale) <= 0, "{:?}", stale.cache_status());
        let age: u64 = stale
            .header("age")
            .and_then(|a| a.parse().ok())
            .expect("Age");
        assert!(age >= 1, "a stale page with Age {age}");
    }
    assert_eq!(origin.runs.get(), 2, "more than one refresh ran");

    // Let the refresh run, and wait (without requests) until it stored its page.
    origin.gate.add_permits(1);
    let hash = hash_key("", &[], "/refreshed");
    eventually(PATIENCE, "the refresh stored its page", async || {
        let entry = cache.store().get(&hash).await.expect("the store answers");
        entry.is_some_and(|e| e.body == "run 2")
    })
    .await;
    let fresh = fetch(&app, "/refreshed").await;
    assert_served(&fresh, "run 2");
    assert!(ttl(&fresh) > 0, "{:?}", fresh.cache_status());
    assert_eq!(
        origin.runs.get(),
        2,
        "the handler ran {} times",
        origin.runs.get()
    );
}

/// A request that read the stale page just before the refresh stored the new one,
/// and asks to refresh just after that refresh ended, must not start another.
async fn a_request_racing_the_end_of_a_refresh_does_not_refresh_again(cache: Cache) {
    let origin = Origin::new();
    let app = app(&cache, &origin);
    assert_served(&fetch(&app, "/refreshed").await, "run 1");
    until_a_refresh_started(&app, &origin, "/refreshed").await;
    // Requests right as the refresh is let go: the first looks up while it stores.
    origin.gate.add_permits(1);
    eventually(PATIENCE, "the refreshed page is served", async || {
        let reply = fetch(&app, "/refreshed").await;
        assert_eq!(reply.status, StatusCode::OK);
        assert!(
            ["run 1", "run 2"].contains(&reply.text().as_str()),
            "{}",
            reply.text()
        );
        reply.text() == "run 2"
    })
    .await;
    assert_eq!(
        origin.runs.get(),
        2,
        "the handler ran {} times",
        origin.runs.get()
    );
}

async fn a_failed_refresh_leaves_the_stale_page_served(cache: Cache) {
    let origin = Origin::new();
    let app = app(&cache, &origin);
    assert_served(&fetch(&app, "/failing").await, "good run 1");
    eventually(
        PATIENCE,
        "the page went stale and a refresh failed",
        async || {
            assert_served(&fetch(&app, "/failing").await, "good run 1");
            origin.runs.get() >= 2
        },
    )
    .await;
    // Every later request may start another refresh; each fails, none is served.
    let runs = origin.runs.get();
    eventually(PATIENCE, "another refresh failed", async || {
        let reply = fetch(&app, "/failing").await;
        assert_served(&reply, "good run 1");
        assert!(reply.is_hit(), "{:?}", reply.cache_status());
        origin.runs.get() > runs
    })
    .await;
    for _ in 0..5 {
        assert_served(&fetch(&app, "/failing").await, "good run 1");
    }
}

both_stores!(
    a_stale_page_is_served_while_one_request_refreshes_it,
    a_failed_refresh_leaves_the_stale_page_served,
);

#[tokio::test]
async fn a_request_racing_the_end_of_a_refresh_does_not_refresh_again_memory() {
    a_request_racing_the_end_of_a_refresh_does_not_refresh_again(memory_cache()).await;
}

#[tokio::test]
async fn a_request_racing_the_end_of_a_refresh_does_not_refresh_again_redis() {
    let server = RedisServer::start();
    let cache = server.cache("racing_refresh");
    a_request_racing_the_end_of_a_refresh_does_not_refresh_again(cache).await;
}

/// Two application instances (two stores, two connections) sharing one Redis: with
/// the lock across instances, a stale page is refreshed by one of them while both go
/// on serving it. Returns the handler's runs once both serve a fresh page.
async fn two_instances_refresh_a_stale_page(
    server: &RedisServer,
    lock: bool,
) -> cache_page_tests::Hits {
    let namespace = cache_page_tests::unique_namespace("stale_lock");
    let instance = || {
        let store = RedisStore::builder(server.url())
            .namespace(namespace.as_str())
            .command_timeout(Duration::from_secs(5))
            .build()
            .expect("a valid URL");
        let builder = Cache::builder(store).timeout(Duration::from_secs(5));
        match lock {
            true => builder.lock_across_instances(Duration::from_secs(30)),
            false => builder,
        }
        .build()
    };
    let (a, b) = (instance(), instance());
    let origin = Origin::new();
    let (app_a, app_b) = (app(&a, &origin), app(&b, &origin));
    assert_served(&fetch(&app_a, "/refreshed-once").await, "run 1");

    // Instance A sees the page stale and starts a refresh, held on the gate.
    until_a_refresh_started(&app_a, &origin, "/refreshed-once").await;
    // Instance B serves the stale page too, and would refresh it. With the lock, it
    // asks for the lock once, then waits for A's page: it does not ask again on each
    // request. (Commands naming the lock key, seen through `MONITOR`: B only reads
    // the page meanwhile, which it polls by its own key.)
    let lock_key = RedisStore::builder(server.url())
        .namespace(namespace.as_str())
        .build()
        .expect("a valid URL")
        .lock_key("");
    let lock_requests = server.watch_commands(&lock_key).await;
    for _ in 0..20 {
        let stale = fetch(&app_b, "/refreshed-once").await;
        assert_served(&stale, "run 1");
        assert!(ttl(&stale) <= 0, "{:?}", stale.cache_status());
    }
    if lock {
        eventually(PATIENCE, "B asked for the lock", async || {
            lock_requests.count() > 0
        })
        .await;
        let asked = lock_requests.count();
        assert_eq!(asked, 1, "B asked for the lock {asked} times");
    }
    // Let every refresh run; both instances end on a fresh page.
    origin.gate.add_permits(10);
    for app in [&app_a, &app_b] {
        eventually(PATIENCE, "a fresh page is served", async || {
            let reply = fetch(app, "/refreshed-once").await;
            assert_eq!(reply.status, StatusCode::OK);
            reply.text() != "run 1" && ttl(&reply) > 0
        })
        .await;
    }
    origin.runs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_with_the_lock_refresh_a_stale_page_once() {
    let server = RedisServer::start();
    let runs = two_instances_refresh_a_stale_page(&server, true).await;
    // A refresh that B started late would take the lock after A let it go, find A's
    // fresh page, and run nothing: the count cannot move on.
    assert_eq!(runs.get(), 2, "the first run and one refresh");
}

/// The test above fails without the lock: each instance refreshes the page once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_without_the_lock_refresh_a_stale_page_each() {
    let server = RedisServer::start();
    let runs = two_instances_refresh_a_stale_page(&server, false).await;
    eventually(PATIENCE, "each instance refreshed the page", async || {
        runs.get() >= 3
    })
    .await;
    assert_eq!(runs.get(), 3, "the first run and one refresh per instance");
}
