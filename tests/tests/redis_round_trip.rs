//! A hit costs one round trip to Redis at most: a `PING`, shared by the hits waiting
//! at once, for a page kept in process; one `GET` of the entry at versions the store
//! keeps on its tracking connection when it keeps no pages; without tracking, one
//! `MGET` of the versions and the entry. Counted with `INFO commandstats` on a server
//! of its own.

use std::{collections::BTreeMap, time::Duration};

use axum::{Extension, Router, extract::State, routing::get};
use cache_page_runtime::{RedisStore, cache_page};
use cache_page_tests::{
    Hits, RedisServer, fetch, patient_cache, unique_namespace, until_a_hit_is_one,
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
