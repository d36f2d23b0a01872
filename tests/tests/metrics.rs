//! The request path reports through the `metrics` facade: hits, misses, stores,
//! bypasses, invalidations and lookup durations, under the documented names. (Its own
//! binary: a recorder is installed once per process.)

use std::{collections::HashMap, time::Duration};

use axum::{Extension, Router, http::Method, routing::get};
use cache_page_runtime::{Cache, MemoryStore, RedisStore, cache_page};
use cache_page_tests::{
    RedisServer, fetch, patient_cache, request, unique_namespace, until_a_hit_is_one,
};
use metrics_util::debugging::{DebugValue, DebuggingRecorder};

#[cache_page(timeout = 60, group = "m")]
async fn page() -> &'static str {
    "page"
}

/// Counter values by `name{label=value,...}`.
fn counters(snapshotter: &metrics_util::debugging::Snapshotter) -> HashMap<String, u64> {
    snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .filter_map(|(key, _, _, value)| {
            let key = key.key();
            let mut labels: Vec<String> = key
                .labels()
                .map(|l| format!("{}={}", l.key(), l.value()))
                .collect();
            labels.sort();
            let name = format!("{}{{{}}}", key.name(), labels.join(","));
            match value {
                DebugValue::Counter(n) => Some((name, n)),
                DebugValue::Histogram(values) => Some((name, values.len() as u64)),
                DebugValue::Gauge(_) => None,
            }
        })
        .collect()
}

#[tokio::test]
async fn the_documented_metrics_are_recorded() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder
        .install()
        .expect("the only recorder of this binary");

    let cache = Cache::new(MemoryStore::new());
    let app = Router::new()
        .route("/page", get(page).post(page))
        .layer(Extension(cache.clone()));
    fetch(&app, "/page").await; // miss, stored
    fetch(&app, "/page").await; // hit
    fetch(&app, "/page").await; // hit
    request(&app, Method::POST, "/page", &[]).await; // bypass (method)
    cache.invalidate_group("m").await.expect("invalidated");

    let counters = counters(&snapshotter);
    let get = |name: &str| counters.get(name).copied().unwrap_or(0);
    assert_eq!(
        get("cache_page_requests_total{outcome=miss}"),
        1,
        "{counters:?}"
    );
    assert_eq!(
        get("cache_page_requests_total{outcome=hit}"),
        2,
        "{counters:?}"
    );
    assert_eq!(
        get("cache_page_requests_total{outcome=bypass}"),
        1,
        "{counters:?}"
    );
    assert_eq!(get("cache_page_stores_total{}"), 1, "{counters:?}");
    assert_eq!(
        get("cache_page_invalidations_total{kind=group}"),
        1,
        "{counters:?}"
    );
    assert_eq!(
        get("cache_page_lookup_duration_seconds{}"),
        3,
        "one per lookup: {counters:?}"
    );
    assert_eq!(get("cache_page_errors_total{op=lookup}"), 0);
    assert_eq!(get("cache_page_lag_waits_total{}"), 0);

    // A `RedisStore` whose invalidation lag is far shorter than a `PING`'s round trip:
    // every hit on its kept page finds the lag run out and waits, and says so.
    let Some(server) = RedisServer::start_private("metrics_lag_waits") else {
        return;
    };
    let store = RedisStore::builder(server.url())
        .namespace(unique_namespace("metrics_lag_waits"))
        .command_timeout(Duration::from_secs(5))
        .invalidation_lag(Duration::from_nanos(1_000))
        .build()
        .expect("a valid URL");
    let app = Router::new()
        .route("/page", axum::routing::get(page))
        .layer(Extension(patient_cache(store)));
    fetch(&app, "/page").await;
    until_a_hit_is_one(&server, &app, "/page", "ping").await;
    // Each snapshot takes the counts since the one before.
    let waited = since_last(&snapshotter, "cache_page_lag_waits_total{}");
    assert!(waited >= 1, "the hit that sent its PING waited for it");
    for _ in 0..3 {
        assert!(fetch(&app, "/page").await.is_hit());
    }
    assert_eq!(since_last(&snapshotter, "cache_page_lag_waits_total{}"), 3);
}

/// The counter `name` since the last snapshot (a snapshot takes the counts).
fn since_last(snapshotter: &metrics_util::debugging::Snapshotter, name: &str) -> u64 {
    counters(snapshotter).get(name).copied().unwrap_or(0)
}
