//! Hits at tracked versions (one `GET`, the versions kept in process on a connection
//! Redis tells of their changes) see every invalidation made before they began, by any
//! process, of any kind; a broken tracking connection loses nothing and is made again;
//! a server that refuses tracking is still a cache.
//!
//! Each test checks first, with `INFO commandstats` on a server of its own, that the
//! hits it relies on are single `GET`s: otherwise it would only test the `MGET` path.

use std::{collections::BTreeMap, time::Duration};

use axum::{Extension, Router, extract::State, routing::get};
use cache_page_runtime::{Cache, RedisStore, cache_page};
use cache_page_tests::{
    Hits, RedisServer, eventually, fetch, patient_cache, unique_namespace, until_a_hit_is_one_get,
};

#[cache_page(timeout = 60, group = "g", prefix = "p")]
async fn page(State(hits): State<Hits>) -> String {
    format!("run {}", hits.bump())
}

const URI: &str = "/page?x=1";

fn app(cache: &Cache, hits: &Hits) -> Router {
    Router::new()
        .route("/page", get(page))
        .with_state(hits.clone())
        .layer(Extension(cache.clone()))
}

fn store(url: &str, namespace: &str) -> RedisStore {
    RedisStore::builder(url)
        .namespace(namespace)
        .command_timeout(Duration::from_secs(5))
        .connect_timeout(Duration::from_secs(5))
        .build()
        .expect("a valid URL")
}

/// Two processes on one server: `b` hits at tracked versions, then `a` invalidates the
/// page with `invalidate`; `b`'s next request must run the handler.
async fn invalidation_reaches_a_tracked_hit(
    test: &str,
    invalidate: impl AsyncFnOnce(&Cache) -> u64,
) {
    let Some(server) = RedisServer::start_private(test) else {
        return;
    };
    let namespace = unique_namespace(test);
    let hits = Hits::new();
    let b_store = store(server.url(), &namespace);
    let b = app(&patient_cache(b_store.clone()), &hits);
    assert_eq!(fetch(&b, URI).await.text(), "run 1");
    assert_eq!(until_a_hit_is_one_get(&server, &b, URI).await, "run 1");

    let a = patient_cache(store(server.url(), &namespace));
    invalidate(&a).await;
    let after = fetch(&b, URI).await;
    assert!(
        !after.is_hit(),
        "{test}: a tracked hit served a page another process invalidated"
    );
    assert_eq!(after.text(), "run 2");
    // And the new page is a tracked hit again.
    assert_eq!(until_a_hit_is_one_get(&server, &b, URI).await, "run 2");
}

#[tokio::test]
async fn a_group_invalidation_reaches_a_tracked_hit() {
    invalidation_reaches_a_tracked_hit("tracked_group", async |a| {
        a.invalidate_group("g").await.expect("invalidated")
    })
    .await;
}

#[tokio::test]
async fn a_path_invalidation_reaches_a_tracked_hit() {
    invalidation_reaches_a_tracked_hit("tracked_path", async |a| {
        a.invalidate_path("/page").await.expect("invalidated")
    })
    .await;
}

#[tokio::test]
async fn a_url_invalidation_reaches_a_tracked_hit() {
    invalidation_reaches_a_tracked_hit("tracked_url", async |a| {
        a.invalidate_url(URI).await.expect("invalidated")
    })
    .await;
}

#[tokio::test]
async fn a_prefix_invalidation_reaches_a_tracked_hit() {
    invalidation_reaches_a_tracked_hit("tracked_prefix", async |a| {
        a.invalidate_prefix("p").await.expect("invalidated")
    })
    .await;
}

#[tokio::test]
async fn a_soft_group_invalidation_reaches_a_tracked_hit() {
    // Without a grace period a soft invalidation serves nothing stale: a miss.
    invalidation_reaches_a_tracked_hit("tracked_soft", async |a| {
        a.invalidate_group_soft("g").await.expect("invalidated")
    })
    .await;
}

/// The id of the one client of `server` with tracking on.
async fn tracking_client(server: &RedisServer) -> String {
    let list: String = server.cmd(&["CLIENT", "LIST"]).await;
    let tracking: Vec<&str> = list
        .lines()
        .filter(|line| {
            line.split(' ')
                .find_map(|f| f.strip_prefix("flags="))
                .is_some_and(|flags| flags.contains('t'))
        })
        .collect();
    assert_eq!(tracking.len(), 1, "clients with tracking on: {list}");
    tracking[0]
        .split(' ')
        .find_map(|f| f.strip_prefix("id="))
        .expect("an id field")
        .to_owned()
}

#[tokio::test]
async fn a_broken_tracking_connection_loses_no_invalidation_and_is_made_again() {
    let test = "tracking_connection_killed";
    let Some(server) = RedisServer::start_private(test) else {
        return;
    };
    let namespace = unique_namespace(test);
    let hits = Hits::new();
    let b_store = store(server.url(), &namespace);
    let b = app(&patient_cache(b_store.clone()), &hits);
    fetch(&b, URI).await;
    assert_eq!(until_a_hit_is_one_get(&server, &b, URI).await, "run 1");
    assert_eq!(b_store.tracking_connections(), 1);

    // The invalidation is made while `b` has no tracking connection: no message about
    // it will ever reach `b`.
    let id = tracking_client(&server).await;
    let killed: u64 = server.cmd(&["CLIENT", "KILL", "ID", &id]).await;
    assert_eq!(killed, 1);
    let a = patient_cache(store(server.url(), &namespace));
    a.invalidate_group("g").await.expect("invalidated");

    let after = fetch(&b, URI).await;
    assert!(
        !after.is_hit(),
        "a page invalidated while the tracking connection was down was served"
    );
    assert_eq!(after.text(), "run 2");
    eventually(
        Duration::from_secs(10),
        "a new tracking connection is up",
        async || {
            assert!(fetch(&b, URI).await.is_hit());
            b_store.tracking_connections() >= 2
        },
    )
    .await;
    assert_eq!(until_a_hit_is_one_get(&server, &b, URI).await, "run 2");
    assert_eq!(hits.get(), 2);
}

#[tokio::test]
async fn a_server_that_refuses_tracking_is_still_a_cache() {
    let test = "tracking_refused";
    let Some(server) = RedisServer::start_private(test) else {
        return;
    };
    let _: () = server
        .cmd(&[
            "ACL",
            "SETUSER",
            "untracked",
            "on",
            "nopass",
            "~*",
            "&*",
            "+@all",
            "-client|tracking",
        ])
        .await;
    let url = format!("redis://untracked:any@127.0.0.1:{}/", server.port());
    let store = store(&url, &unique_namespace(test));
    let hits = Hits::new();
    let app = app(&patient_cache(store.clone()), &hits);
    fetch(&app, URI).await;
    eventually(
        Duration::from_secs(10),
        "the server refused tracking",
        async || {
            assert!(fetch(&app, URI).await.is_hit());
            let log: Vec<BTreeMap<String, redis::Value>> = server.cmd(&["ACL", "LOG"]).await;
            log.iter().any(|entry| {
                entry.get("object") == Some(&redis::Value::BulkString(b"client|tracking".to_vec()))
            })
        },
    )
    .await;
    let commands = server
        .commands_during(async || {
            for _ in 0..5 {
                assert!(fetch(&app, URI).await.is_hit());
            }
        })
        .await;
    assert_eq!(commands, BTreeMap::from([("mget".to_owned(), 5)]));
    assert_eq!(store.tracking_connections(), 0);
    assert_eq!(hits.get(), 1);
}

/// `tracking_total_keys` from `INFO stats`: how many keys the server tracks for its
/// clients.
async fn tracked_keys(server: &RedisServer) -> u64 {
    let info: String = server.cmd(&["INFO", "stats"]).await;
    info.lines()
        .find_map(|l| l.trim().strip_prefix("tracking_total_keys:"))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no tracking_total_keys in INFO stats: {info}"))
}

#[tokio::test]
async fn pages_requested_once_leave_nothing_tracked() {
    let test = "tracking_only_hits";
    let Some(server) = RedisServer::start_private(test) else {
        return;
    };
    let store = store(server.url(), &unique_namespace(test));
    let hits = Hits::new();
    let app = app(&patient_cache(store.clone()), &hits);
    fetch(&app, URI).await;
    until_a_hit_is_one_get(&server, &app, URI).await;
    let tracked = tracked_keys(&server).await;
    assert!(tracked > 0, "the hit's versions are tracked");
    for n in 0..20 {
        let reply = fetch(&app, &format!("/page?once={n}")).await;
        assert!(reply.is_stored(), "{}", reply.cache_status());
    }
    assert_eq!(
        tracked_keys(&server).await,
        tracked,
        "misses on URLs never requested again made the server track keys"
    );
    // A second request for one of them is a hit, and its page is learnt.
    assert_eq!(
        until_a_hit_is_one_get(&server, &app, "/page?once=3").await,
        "run 5"
    );
    assert!(tracked_keys(&server).await > tracked);
}
