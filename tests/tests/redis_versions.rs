//! Group versions in Redis: an invalidated page never comes back, even when the
//! version key is lost (deleted, expired, evicted), and an invalidation made by one
//! process is seen by every other.

use std::time::Duration;

use axum::{Extension, Router, extract::State, routing::get};
use cache_page_runtime::{Cache, RedisStore, Version, cache_page};
use cache_page_tests::{Hits, RedisServer, fetch, patient_cache};

#[cache_page(timeout = 60, group = "g")]
async fn page(State(hits): State<Hits>) -> String {
    format!("run {}", hits.bump())
}

fn app(cache: &Cache, hits: &Hits) -> Router {
    Router::new()
        .route("/page", get(page))
        .with_state(hits.clone())
        .layer(Extension(cache.clone()))
}

/// A second process's view of `store`'s namespace: a store of its own, with no
/// versions remembered.
fn another_process(server: &RedisServer, store: &RedisStore) -> Cache {
    let store = RedisStore::builder(server.url())
        .namespace(store.namespace())
        .command_timeout(Duration::from_secs(5))
        .build()
        .expect("a valid URL");
    patient_cache(store)
}

fn cache_on(store: &RedisStore) -> Cache {
    patient_cache(store.clone())
}

async fn page_keys(server: &RedisServer, store: &RedisStore) -> Vec<String> {
    server.cmd(&["KEYS", &store.page_key("*")]).await
}

#[tokio::test]
async fn invalidated_page_never_returns_after_version_key_loss() {
    let server = RedisServer::start();
    let store = server.store("invalidated_page_never_returns");
    let version_key = store.version_key(Version::Group("g"));
    let cache = cache_on(&store);
    let hits = Hits::new();
    let app = app(&cache, &hits);

    assert_eq!(fetch(&app, "/page").await.text(), "run 1");
    assert!(fetch(&app, "/page").await.is_hit());
    let old_pages = page_keys(&server, &store).await;
    assert!(
        !old_pages.is_empty(),
        "no page under {}",
        store.page_key("*")
    );

    cache.invalidate_group("g").await.expect("invalidated");
    let deleted: u64 = server.cmd(&["DEL", &version_key]).await;
    assert_eq!(deleted, 1, "the group's version key is {version_key}");
    for key in &old_pages {
        let exists: u64 = server.cmd(&["EXISTS", key]).await;
        assert_eq!(
            exists, 1,
            "the old page must still be in Redis for this test to mean anything"
        );
    }

    // A process that never saw the group, then this one: neither gets the old page.
    let other = self::app(&another_process(&server, &store), &hits);
    let from_other = fetch(&other, "/page").await;
    assert!(
        !from_other.is_hit(),
        "the page invalidated before the version loss came back"
    );
    assert_eq!(from_other.text(), "run 2");
    let from_this = fetch(&app, "/page").await;
    assert_ne!(
        from_this.text(),
        "run 1",
        "the page invalidated before the version loss came back"
    );
    assert_eq!(from_this.text(), "run 2");
    assert_eq!(hits.get(), 2);
}

#[tokio::test]
async fn lost_version_key_leaves_old_entries_unreachable() {
    let server = RedisServer::start();
    let store = server.store("lost_version_key");
    let cache = cache_on(&store);
    let hits = Hits::new();
    let app = app(&cache, &hits);

    assert_eq!(fetch(&app, "/page").await.text(), "run 1");
    assert!(fetch(&app, "/page").await.is_hit());
    let deleted: u64 = server
        .cmd(&["DEL", &store.version_key(Version::Group("g"))])
        .await;
    assert_eq!(deleted, 1);

    let after = fetch(&app, "/page").await;
    assert!(
        !after.is_hit(),
        "an entry stored under a lost version was served"
    );
    assert_eq!(after.text(), "run 2");
    assert!(
        fetch(&app, "/page").await.is_hit(),
        "the page is cached again"
    );
}

#[tokio::test]
async fn losing_every_version_key_leaves_old_entries_unreachable() {
    let server = RedisServer::start();
    let store = server.store("losing_every_version_key");
    let cache = cache_on(&store);
    let hits = Hits::new();
    let app = app(&cache, &hits);

    assert_eq!(fetch(&app, "/page").await.text(), "run 1");
    assert!(fetch(&app, "/page").await.is_hit());
    // What FLUSHALL would do to the versions, with the pages kept.
    let all: Vec<String> = server
        .cmd(&["KEYS", &format!("{}:*", store.namespace())])
        .await;
    let pages = page_keys(&server, &store).await;
    for key in all.iter().filter(|k| !pages.contains(k)) {
        let _: u64 = server.cmd(&["DEL", key]).await;
    }
    assert!(!page_keys(&server, &store).await.is_empty());

    for cache in [cache.clone(), another_process(&server, &store)] {
        let reply = fetch(&self::app(&cache, &hits), "/page").await;
        assert_ne!(
            reply.text(),
            "run 1",
            "an entry stored under lost versions was served"
        );
    }
}

#[tokio::test]
async fn invalidation_by_another_process_is_seen() {
    let server = RedisServer::start();
    let store = server.store("invalidation_by_another_process");
    let hits = Hits::new();
    let this = app(&cache_on(&store), &hits);
    let other_cache = another_process(&server, &store);
    let other = app(&other_cache, &hits);

    assert_eq!(fetch(&this, "/page").await.text(), "run 1");
    let shared = fetch(&other, "/page").await;
    assert!(shared.is_hit(), "processes on one Redis share pages");
    assert_eq!(shared.text(), "run 1");

    other_cache
        .invalidate_group("g")
        .await
        .expect("invalidated");
    let after = fetch(&this, "/page").await;
    assert!(
        !after.is_hit(),
        "this process served a page another process invalidated"
    );
    assert_eq!(after.text(), "run 2");
    let back = fetch(&other, "/page").await;
    assert!(back.is_hit());
    assert_eq!(back.text(), "run 2");
}
