//! A hit costs one round trip to Redis at most: a `PING`, shared by the hits waiting
//! at once, for a page kept in process; one `GET` of the entry at versions the store
//! keeps on its tracking connection when it keeps no pages; without tracking, one
//! `MGET` of the versions and the entry. Counted with `INFO commandstats` on a server
//! of its own.

use std::{collections::BTreeMap, time::Duration};

use axum::{Extension, Router, extract::State, routing::get};
use cache_page_runtime::{RedisStore, cache_page};
use cache_page_tests::{
    Gated, Hits, RedisServer, eventually, fetch, patient_cache, unique_namespace,
    until_a_hit_is_one,
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

/// How the store under test reads a hit.
#[derive(Clone, Copy)]
enum Hit {
    /// The default: the page kept in process, confirmed by a `PING`.
    Kept,
    /// `near_cache_bytes(0)`: one `GET` at tracked versions.
    Get,
    /// `tracked_versions(false)`: one `MGET`.
    Mget,
}

impl Hit {
    fn command(self) -> &'static str {
        match self {
            Hit::Kept => "ping",
            Hit::Get => "get",
            Hit::Mget => "mget",
        }
    }
}

/// A store of `kind` on `server`, and an app of both pages on it.
fn app(server: &RedisServer, kind: Hit, hits: &Hits) -> Router {
    let mut store = RedisStore::builder(server.url())
        .namespace(unique_namespace("round_trip"))
        .command_timeout(Duration::from_secs(5))
        .tracked_versions(!matches!(kind, Hit::Mget));
    if let Hit::Get = kind {
        store = store.near_cache_bytes(0);
    }
    let store = store.build().expect("a valid URL");
    Router::new()
        .route("/grouped", get(grouped))
        .route("/ungrouped", get(ungrouped))
        .with_state(hits.clone())
        .layer(Extension(patient_cache(store)))
}

/// The commands `N` hits on `uri`, one after the other, made the server run.
async fn n_hits(server: &RedisServer, uri: &str, kind: Hit) -> BTreeMap<String, u64> {
    let hits = Hits::new();
    let app = app(server, kind, &hits);
    // Warm-up: the miss stores the page, the hits teach the process the versions and
    // the page.
    fetch(&app, uri).await;
    assert!(fetch(&app, uri).await.is_hit());
    if !matches!(kind, Hit::Mget) {
        until_a_hit_is_one(server, &app, uri, kind.command()).await;
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

async fn check_n_hits(test: &str, uri: &str, kind: Hit) {
    let Some(server) = RedisServer::start_private(test) else {
        return;
    };
    let commands = n_hits(&server, uri, kind).await;
    let expected = BTreeMap::from([(kind.command().to_owned(), N)]);
    assert_eq!(commands, expected, "commands run for {N} hits on {uri}");
}

#[tokio::test]
async fn a_hit_on_a_grouped_page_is_one_ping() {
    check_n_hits("hit_grouped_ping", "/grouped", Hit::Kept).await;
}

#[tokio::test]
async fn a_hit_on_an_ungrouped_page_is_one_ping() {
    check_n_hits("hit_ungrouped_ping", "/ungrouped", Hit::Kept).await;
}

/// Without pages kept in process a hit reads the entry: one `GET`.
#[tokio::test]
async fn without_the_near_cache_a_hit_is_one_get() {
    check_n_hits("hit_grouped_get", "/grouped", Hit::Get).await;
}

/// Without tracked versions a hit reads the versions with the entry: still one
/// command, an `MGET` of four keys, so the tests above fail without the feature.
#[tokio::test]
async fn without_tracked_versions_a_hit_is_one_mget() {
    check_n_hits("hit_grouped_mget", "/grouped", Hit::Mget).await;
}

/// Hits that arrive together share their `PING`s: each needs one sent after it
/// began, and every hit waiting while one is out takes the next.
#[tokio::test]
async fn hits_at_once_share_their_pings() {
    let Some(server) = RedisServer::start_private("hits_share_pings") else {
        return;
    };
    let hits = Hits::new();
    let app = app(&server, Hit::Kept, &hits);
    fetch(&app, "/grouped").await;
    until_a_hit_is_one(&server, &app, "/grouped", "ping").await;
    const AT_ONCE: u64 = 200;
    let commands = server
        .commands_during(async || {
            let replies =
                futures_util::future::join_all((0..AT_ONCE).map(|_| fetch(&app, "/grouped"))).await;
            assert!(replies.iter().all(|r| r.is_hit()));
        })
        .await;
    assert_eq!(hits.get(), 1);
    let pings = commands.get("ping").copied().unwrap_or(0);
    assert_eq!(
        commands.keys().collect::<Vec<_>>(),
        ["ping"],
        "{AT_ONCE} hits at once ran {commands:?}"
    );
    assert!(
        (1..AT_ONCE / 2).contains(&pings),
        "{AT_ONCE} hits at once sent {pings} PINGs"
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

/// Round trips the store counted for misses on five URLs never seen before.
async fn round_trips_for_new_urls(tracked: bool) -> Vec<u64> {
    let server = RedisServer::start();
    let store = RedisStore::builder(server.url())
        .namespace(unique_namespace("miss_round_trips"))
        .command_timeout(Duration::from_secs(5))
        .tracked_versions(tracked)
        .build()
        .expect("a valid URL");
    let hits = Hits::new();
    let app = Router::new()
        .route("/grouped", get(grouped))
        .with_state(hits.clone())
        .layer(Extension(patient_cache(store.clone())));
    fetch(&app, "/grouped?warm=1").await; // the groups' versions become known
    let mut trips = Vec::new();
    for n in 0..5 {
        let before = store.round_trips();
        let reply = fetch(&app, &format!("/grouped?new={n}")).await;
        assert!(reply.is_stored(), "{}", reply.cache_status());
        trips.push(store.round_trips() - before);
    }
    assert_eq!(hits.get(), 6);
    trips
}

/// A miss on a URL never seen before costs two round trips: the lookup, which seeds
/// the new URL's version in the same write, and storing the page.
#[tokio::test]
async fn a_miss_on_a_new_url_costs_two_round_trips() {
    assert_eq!(round_trips_for_new_urls(true).await, [2; 5]);
}

/// Without tracked versions the lookup's `MGET` is the hit path, which writes
/// nothing: a new URL's version is seeded in a round trip of its own, so the test
/// above would fail without seeding in the lookup's write.
#[tokio::test]
async fn without_tracked_versions_a_new_url_is_seeded_apart() {
    assert_eq!(round_trips_for_new_urls(false).await, [3; 5]);
}

/// A URL invalidated while its first miss runs the handler: the page that miss stores
/// was built before the invalidation, so it is never served. The URL's version was
/// seeded before the handler ran, and the invalidation moved it.
#[tokio::test]
async fn a_new_url_invalidated_while_its_miss_runs_is_not_served_from_before() {
    #[cache_page(timeout = 60)]
    async fn gated(State(origin): State<Gated>) -> String {
        format!("run {}", origin.run().await)
    }

    let server = RedisServer::start();
    let cache = server.cache("invalidated_while_missing");
    let origin = Gated::new();
    let app = Router::new()
        .route("/gated", get(gated))
        .with_state(origin.clone())
        .layer(Extension(cache.clone()));
    fetch(&app, "/gated?warm=1").await; // run 1, not held
    let first = tokio::spawn({
        let app = app.clone();
        async move { fetch(&app, "/gated?new=1").await }
    });
    eventually(
        Duration::from_secs(10),
        "the miss runs the handler",
        async || origin.runs.get() == 2,
    )
    .await;
    cache
        .invalidate_url("/gated?new=1")
        .await
        .expect("Redis is up");
    origin.gate.add_permits(2);
    let first = first.await.expect("the request ran");
    assert_eq!(first.text(), "run 2");
    assert!(first.is_stored(), "{}", first.cache_status());
    let after = fetch(&app, "/gated?new=1").await;
    assert!(!after.is_hit(), "{}", after.cache_status());
    assert_eq!(after.text(), "run 3");
}
