//! A hit costs one round trip to Redis: one `GET` of the entry at versions the store
//! keeps on its tracking connection, or, without it, one `MGET` of the versions and the
//! entry. Counted with `INFO commandstats` on a server of its own.

use std::{collections::BTreeMap, time::Duration};

use axum::{Extension, Router, extract::State, routing::get};
use cache_page_runtime::{RedisStore, cache_page};
use cache_page_tests::{
    Hits, RedisServer, fetch, patient_cache, unique_namespace, until_a_hit_is_one_get,
};

#[cache_page(timeout = 60, group = "g", group = "h")]
async fn grouped(State(hits): State<Hits>) -> String {
    format!("run {}", hits.bump())
}

#[cache_page(timeout = 60)]
async fn ungrouped(State(hits): State<Hits>) -> String {
    format!("run {}", hits.bump())
}

const N: u64 = 20;

/// The commands `N` hits on `uri` made the server run, with or without tracked
/// versions.
async fn n_hits(server: &RedisServer, uri: &str, tracked: bool) -> BTreeMap<String, u64> {
    let store = RedisStore::builder(server.url())
        .namespace(unique_namespace("round_trip"))
        .command_timeout(Duration::from_secs(5))
        .tracked_versions(tracked)
        .build()
        .expect("a valid URL");
    let hits = Hits::new();
    let app = Router::new()
        .route("/grouped", get(grouped))
        .route("/ungrouped", get(ungrouped))
        .with_state(hits.clone())
        .layer(Extension(patient_cache(store.clone())));
    // Warm-up: the miss stores the page, the hits teach the process the versions.
    fetch(&app, uri).await;
    assert!(fetch(&app, uri).await.is_hit());
    if tracked {
        until_a_hit_is_one_get(server, &app, uri).await;
    }
    let commands = server
        .commands_during(async || {
            for _ in 0..N {
                assert!(fetch(&app, uri).await.is_hit());
            }
        })
        .await;
    assert_eq!(hits.get(), 1);
    commands
}

#[tokio::test]
async fn a_hit_on_a_grouped_page_is_one_get() {
    let Some(server) = RedisServer::start_private("a_hit_on_a_grouped_page_is_one_get") else {
        return;
    };
    let commands = n_hits(&server, "/grouped", true).await;
    let expected = BTreeMap::from([("get".to_owned(), N)]);
    assert_eq!(
        commands, expected,
        "commands run for {N} hits on a grouped page"
    );
}

#[tokio::test]
async fn a_hit_on_an_ungrouped_page_is_one_get() {
    let Some(server) = RedisServer::start_private("a_hit_on_an_ungrouped_page_is_one_get") else {
        return;
    };
    let commands = n_hits(&server, "/ungrouped", true).await;
    let expected = BTreeMap::from([("get".to_owned(), N)]);
    assert_eq!(
        commands, expected,
        "commands run for {N} hits on an ungrouped page"
    );
}

/// Without tracked versions a hit reads the versions with the entry: still one
/// command, an `MGET` of four keys, so the tests above fail without the feature.
#[tokio::test]
async fn without_tracked_versions_a_hit_is_one_mget() {
    let Some(server) = RedisServer::start_private("without_tracked_versions_a_hit_is_one_mget")
    else {
        return;
    };
    let commands = n_hits(&server, "/grouped", false).await;
    let expected = BTreeMap::from([("mget".to_owned(), N)]);
    assert_eq!(
        commands, expected,
        "commands run for {N} hits on a grouped page"
    );
}

/// Round trips counted by the store itself (each command or pipeline sent is one):
/// `INFO commandstats` counts commands, not how many trips they took.
async fn round_trips_for_n_hits(pipelined: bool) -> u64 {
    let server = RedisServer::start();
    let store = server.store("round_trips");
    let store = cache_page_runtime::RedisStore::builder(server.url())
        .namespace(store.namespace().to_owned())
        .command_timeout(std::time::Duration::from_secs(5))
        .pipelined_hits(pipelined)
        .build()
        .expect("a valid URL");
    let hits = Hits::new();
    let app = Router::new()
        .route("/grouped", get(grouped))
        .with_state(hits.clone())
        .layer(Extension(cache_page_tests::patient_cache(store.clone())));
    fetch(&app, "/grouped").await;
    assert!(fetch(&app, "/grouped").await.is_hit());
    let before = store.round_trips();
    for _ in 0..N {
        assert!(fetch(&app, "/grouped").await.is_hit());
    }
    assert_eq!(hits.get(), 1);
    store.round_trips() - before
}

#[tokio::test]
async fn a_hit_with_two_groups_costs_one_round_trip() {
    assert_eq!(round_trips_for_n_hits(true).await, N);
}

/// Without the pipelined lookup (the seed's design: versions, then entry) the same
/// hits cost two round trips each, so the test above would fail without the feature.
#[tokio::test]
async fn the_version_then_entry_design_costs_two_round_trips_per_hit() {
    assert_eq!(round_trips_for_n_hits(false).await, 2 * N);
}

/// A miss on a URL never seen before costs three round trips: the lookup pipeline,
/// seeding the new URL's version, and storing the page.
#[tokio::test]
async fn a_miss_on_a_new_url_costs_three_round_trips() {
    let server = RedisServer::start();
    let store = server.store("miss_round_trips");
    let hits = Hits::new();
    let app = Router::new()
        .route("/grouped", get(grouped))
        .with_state(hits.clone())
        .layer(Extension(cache_page_tests::patient_cache(store.clone())));
    fetch(&app, "/grouped?warm=1").await; // the groups' versions become known
    for n in 0..5 {
        let before = store.round_trips();
        let reply = fetch(&app, &format!("/grouped?new={n}")).await;
        assert!(reply.is_stored(), "{}", reply.cache_status());
        assert_eq!(store.round_trips() - before, 3, "round trips for miss {n}");
    }
}
