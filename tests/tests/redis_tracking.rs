//! Hits at tracked versions (the versions kept in process on a connection Redis tells
//! of their changes), whether they read the page with one `GET` or serve the page kept
//! in process after one `PING`, see every invalidation made before they began, by any
//! process, of any kind, and every change of the page itself; a broken tracking
//! connection loses nothing and is made again; a server that refuses tracking is still
//! a cache.
//!
//! Each test checks first, with `INFO commandstats` on a server of its own, that the
//! hits it relies on are single `PING`s (or `GET`s): otherwise it would only test the
//! `MGET` path.

use std::{collections::BTreeMap, time::Duration};

use axum::{Extension, Router, extract::State, routing::get};
use cache_page_runtime::{Cache, RedisStore, cache_page};
use cache_page_tests::{
    Hits, RedisServer, eventually, fetch, patient_cache, unique_namespace, until_a_hit_is_one,
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
    near_store(url, namespace, true)
}

/// A store that keeps pages in process (`near`, the default) or reads them with one
/// `GET`.
fn near_store(url: &str, namespace: &str, near: bool) -> RedisStore {
    let store = RedisStore::builder(url)
        .namespace(namespace)
        .command_timeout(Duration::from_secs(5))
        .connect_timeout(Duration::from_secs(5));
    let store = if near {
        store
    } else {
        store.near_cache_bytes(0)
    };
    store.build().expect("a valid URL")
}

/// The one command of a tracked hit.
fn hit_command(near: bool) -> &'static str {
    if near { "ping" } else { "get" }
}

/// Two processes on one server: `b` hits at tracked versions, then `a` invalidates the
/// page with `invalidate`; `b`'s next request must run the handler. Once with `b`
/// keeping the page in process, once reading it with a `GET`.
async fn invalidation_reaches_a_tracked_hit(test: &str, invalidate: impl AsyncFn(&Cache) -> u64) {
    let Some(server) = RedisServer::start_private(test) else {
        return;
    };
    for near in [true, false] {
        let namespace = unique_namespace(test);
        let hits = Hits::new();
        let b_store = near_store(server.url(), &namespace, near);
        let b = app(&patient_cache(b_store.clone()), &hits);
        let command = hit_command(near);
        assert_eq!(fetch(&b, URI).await.text(), "run 1");
        assert_eq!(until_a_hit_is_one(&server, &b, URI, command).await, "run 1");
        served_from_a_copy(&b, "run 1").await;

        let a = patient_cache(store(server.url(), &namespace));
        invalidate(&a).await;
        let after = fetch(&b, URI).await;
        assert!(
            !after.is_hit(),
            "{test}: a tracked hit (near: {near}) served a page another process invalidated"
        );
        assert_eq!(after.text(), "run 2");
        // And the new page is a tracked hit again.
        assert_eq!(until_a_hit_is_one(&server, &b, URI, command).await, "run 2");
    }
}

/// Hits `uri` three times, each a hit with `body`: a thread copies a page kept in
/// process the second time it finds it with nothing changed, so the hits that follow
/// are served from that copy, and an invalidation must reach it too.
async fn served_from_a_copy(app: &Router, body: &str) {
    for _ in 0..3 {
        let hit = fetch(app, URI).await;
        assert!(hit.is_hit());
        assert_eq!(hit.text(), body);
    }
}

/// The key of the one page stored on `server`.
async fn the_page_key(server: &RedisServer) -> String {
    let keys: Vec<String> = server.cmd(&["KEYS", "*:page:*"]).await;
    assert_eq!(keys.len(), 1, "page keys: {keys:?}");
    keys.into_iter().next().expect("one key")
}

/// A private server and an app on it whose page is kept in process: its hits are one
/// `PING` each.
async fn a_kept_page(test: &str) -> Option<(RedisServer, Router, Hits)> {
    let server = RedisServer::start_private(test)?;
    let hits = Hits::new();
    let b = app(
        &patient_cache(store(server.url(), &unique_namespace(test))),
        &hits,
    );
    fetch(&b, URI).await;
    assert_eq!(until_a_hit_is_one(&server, &b, URI, "ping").await, "run 1");
    served_from_a_copy(&b, "run 1").await;
    Some((server, b, hits))
}

/// A page kept in process is dropped when another process deletes it from Redis.
#[tokio::test]
async fn a_page_deleted_in_redis_is_not_served_from_process() {
    let Some((server, b, _hits)) = a_kept_page("kept_page_deleted").await else {
        return;
    };
    let deleted: u64 = server.cmd(&["DEL", &the_page_key(&server).await]).await;
    assert_eq!(deleted, 1);
    let after = fetch(&b, URI).await;
    assert!(!after.is_hit(), "a page deleted in Redis was served");
    assert_eq!(after.text(), "run 2");
}

/// A page kept in process gives way to the page another process stores in its place.
#[tokio::test]
async fn a_page_rewritten_in_redis_is_served_anew() {
    let Some((server, b, hits)) = a_kept_page("kept_page_rewritten").await else {
        return;
    };
    // Another process's page, as it would store it: the same entry, another body.
    let key = the_page_key(&server).await;
    let stored: Vec<u8> = server.cmd(&["GET", &key]).await;
    let mut entry = cache_page_runtime::Entry::decode(stored.into()).expect("an entry");
    entry.body = "run elsewhere".into();
    let encoded = entry.encode();
    let mut set = redis::cmd("SET");
    set.arg(&key).arg(encoded.as_ref()).arg("EX").arg(60);
    let () = server.cli().await.query(&set).await;
    let after = fetch(&b, URI).await;
    assert!(after.is_hit());
    assert_eq!(after.text(), "run elsewhere");
    assert_eq!(hits.get(), 1);
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

/// The news of an invalidation can reach a store after a hit found its kept page and
/// before the `PONG` it waits for: the hit must then not serve the page. Here another
/// process invalidates the group while this test's runtime is blocked, so that the
/// news waits, unread, on the tracking connection; the next hit finds the page kept at
/// the old epoch, sends its `PING`, and reads the news before the `PONG`.
#[tokio::test]
async fn news_read_while_a_hit_waits_for_its_pong_is_not_missed() {
    let Some((server, b, hits)) = a_kept_page("news_before_pong").await else {
        return;
    };
    let key = the_page_key(&server).await;
    let (namespace, _) = key.split_once(":page:").expect("a page key");
    // Another process, on a thread and runtime of its own: this runtime does not run
    // until it is done, so this store reads nothing meanwhile.
    std::thread::scope(|s| {
        s.spawn(|| {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime");
            runtime.block_on(async {
                let a = patient_cache(store(server.url(), namespace));
                a.invalidate_group("g").await.expect("invalidated")
            })
        })
        .join()
        .expect("the other process invalidated")
    });
    let after = fetch(&b, URI).await;
    assert!(
        !after.is_hit(),
        "a hit served a page whose invalidation it read before its PONG"
    );
    assert_eq!(after.text(), "run 2");
    assert_eq!(hits.get(), 2);
}

/// The lines of `CLIENT LIST` of the clients of `server` with tracking on.
async fn tracking_clients(server: &RedisServer) -> Vec<String> {
    let list: String = server.cmd(&["CLIENT", "LIST"]).await;
    list.lines()
        .filter(|line| {
            line.split(' ')
                .find_map(|f| f.strip_prefix("flags="))
                .is_some_and(|flags| flags.contains('t'))
        })
        .map(str::to_owned)
        .collect()
}

/// The id of the one client of `server` with tracking on.
async fn tracking_client(server: &RedisServer) -> String {
    let tracking = tracking_clients(server).await;
    assert_eq!(tracking.len(), 1, "clients with tracking on: {tracking:?}");
    tracking[0]
        .split(' ')
        .find_map(|f| f.strip_prefix("id="))
        .expect("an id field")
        .to_owned()
}

/// Each thread remembers the tracking connection its hits went down, but not so that
/// the connection outlives its store: once the store is dropped, it is closed.
#[tokio::test]
async fn a_dropped_store_closes_its_tracking_connection() {
    let Some((server, b, _hits)) = a_kept_page("dropped_store").await else {
        return;
    };
    assert_eq!(tracking_clients(&server).await.len(), 1);
    drop(b);
    eventually(
        Duration::from_secs(10),
        "the tracking connection closed",
        async || tracking_clients(&server).await.is_empty(),
    )
    .await;
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
    assert_eq!(until_a_hit_is_one(&server, &b, URI, "ping").await, "run 1");
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
    assert_eq!(until_a_hit_is_one(&server, &b, URI, "ping").await, "run 2");
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
    until_a_hit_is_one(&server, &app, URI, "ping").await;
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
        until_a_hit_is_one(&server, &app, "/page?once=3", "ping").await,
        "run 5"
    );
    assert!(tracked_keys(&server).await > tracked);
}
