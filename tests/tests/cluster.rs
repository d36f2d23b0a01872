//! `RedisClusterStore` on a real Redis Cluster (three masters, or three masters and
//! three replicas, started by the test): hits and misses, invalidation at every level,
//! lost version keys, damaged entries, tags whose pages live on other nodes, a node
//! restart and a failover under load, a cluster down at start. No command may cross
//! hash slots: the tests check that no node ever answered `CROSSSLOT`.
//!
//! Tests that neither stop nodes nor count commands share one cluster
//! ([`RedisCluster::shared`]) and keep apart by namespace.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use axum::{Extension, Router, extract::State, http::Uri, routing::get};
use cache_page_runtime::{
    Cache, CachePageLayer, Error, PageConfig, RedisClusterStore, Store, Version, cache_page,
};
use cache_page_tests::{
    Hits, RedisCluster, Reply, eventually, fetch, patient_cache, unique_namespace,
};

#[cache_page(timeout = 60, group = "products")]
async fn product(State(hits): State<Hits>, uri: Uri) -> String {
    format!("{uri} run {}", hits.bump())
}

#[cache_page(timeout = 60, group = "users")]
async fn user(State(hits): State<Hits>, uri: Uri) -> String {
    format!("{uri} run {}", hits.bump())
}

#[cache_page(timeout = 60)]
async fn item(State(hits): State<Hits>, uri: Uri) -> String {
    format!("{uri} run {}", hits.bump())
}

/// Served stale for a minute after a soft invalidation of its group.
#[cache_page(timeout = 60, group = "products", grace = 60)]
async fn offer(State(hits): State<Hits>, uri: Uri) -> String {
    format!("{uri} run {}", hits.bump())
}

/// Cached by a layer with the tag `catalogue` (the attribute takes no tags).
async fn tagged(State(hits): State<Hits>, uri: Uri) -> String {
    format!("{uri} run {}", hits.bump())
}

fn app(cache: &Cache, hits: &Hits) -> Router {
    let tagged = Router::new()
        .route("/tagged/{id}", get(tagged))
        .layer(CachePageLayer::new(PageConfig::new(60u64).tag("catalogue")));
    Router::new()
        .route("/products/{id}", get(product))
        .route("/users/{id}", get(user))
        .route("/items/{id}", get(item))
        .route("/offers/{id}", get(offer))
        .merge(tagged)
        .with_state(hits.clone())
        .layer(Extension(cache.clone()))
}

/// A cache with the production defaults (store command timeout 250 ms, cache timeout
/// 500 ms, circuit breaker): for the tests where nodes go away.
fn default_cache(cluster: &RedisCluster, test: &str) -> Cache {
    let store = RedisClusterStore::builder(cluster.urls())
        .namespace(unique_namespace(test))
        .build()
        .expect("valid URLs");
    Cache::new(store)
}

fn uris(prefix: &str, n: usize) -> Vec<String> {
    (1..=n).map(|i| format!("{prefix}/{i}")).collect()
}

/// Requests each URI twice so that it is cached, and checks that it is.
async fn warm(app: &Router, uris: &[String]) {
    for uri in uris {
        fetch(app, uri).await;
        assert!(fetch(app, uri).await.is_hit(), "{uri} was not cached");
    }
}

/// Checks which URIs are served from the cache.
async fn assert_cached(app: &Router, uris: &[String], cached: bool) {
    for uri in uris {
        let reply = fetch(app, uri).await;
        let state = if cached { "cached" } else { "invalidated" };
        assert_eq!(
            reply.is_hit(),
            cached,
            "{uri} should be {state}: {}",
            reply.text()
        );
    }
}

/// No node ever answered `CROSSSLOT`: no command of the store touched two slots.
fn assert_no_cross_slot(cluster: &RedisCluster) {
    let errors = cluster.error_counts();
    assert!(
        !errors.contains_key("CROSSSLOT"),
        "a command crossed hash slots: {errors:?}"
    );
}

async fn page_keys(cluster: &RedisCluster, store: &RedisClusterStore) -> Vec<String> {
    cluster.cmd(&["KEYS", &store.page_key("*")]).await
}

#[tokio::test]
async fn a_miss_stores_the_page_and_the_next_request_is_a_hit() {
    let cluster = RedisCluster::shared();
    let store = cluster.store("miss_then_hit");
    let hits = Hits::new();
    let app = app(&patient_cache(store.clone()), &hits);

    let miss = fetch(&app, "/products/1").await;
    assert!(!miss.is_hit());
    assert_eq!(miss.text(), "/products/1 run 1");
    let hit = fetch(&app, "/products/1").await;
    assert!(hit.is_hit(), "not served from the cache: {hit:?}");
    assert_eq!(hit.body, miss.body);
    assert_eq!(hits.get(), 1);

    // RedisStore's key layout.
    assert_eq!(page_keys(&cluster, &store).await.len(), 1);
    for version in [
        Version::Group("products"),
        Version::Path("/products/1"),
        Version::Url("/products/1"),
    ] {
        let key = store.version_key(version);
        let value: Option<u64> = cluster.cmd(&["GET", &key]).await;
        assert!(value.is_some_and(|v| v > 0), "no version at {key}");
    }

    // Another process on the same namespace is served the same page.
    let other = self::app(&patient_cache(cluster.store_in(store.namespace())), &hits);
    let shared = fetch(&other, "/products/1").await;
    assert!(shared.is_hit(), "processes on one cluster share pages");
    assert_eq!(shared.body, miss.body);
    assert_no_cross_slot(&cluster);
}

#[tokio::test]
async fn invalidating_a_group_invalidates_all_its_pages_and_no_other() {
    let cluster = RedisCluster::shared();
    let store = cluster.store("group");
    let cache = patient_cache(store.clone());
    let hits = Hits::new();
    let app = app(&cache, &hits);
    // Six pages: their entries are spread over the nodes.
    let products = uris("/products", 6);
    let others = vec!["/users/1".to_owned(), "/items/1".to_owned()];
    warm(&app, &products).await;
    warm(&app, &others).await;
    let before = hits.get();

    cache
        .invalidate_group("products")
        .await
        .expect("invalidated");
    assert_cached(&app, &others, true).await;
    assert_cached(&app, &products, false).await;
    assert_eq!(hits.get(), before + products.len());
    assert_cached(&app, &products, true).await;

    // An invalidation by another process is seen at once.
    let other = patient_cache(cluster.store_in(store.namespace()));
    other
        .invalidate_group("products")
        .await
        .expect("invalidated");
    assert_cached(&app, &products, false).await;
    assert_cached(&app, &others, true).await;
    assert_no_cross_slot(&cluster);
}

#[tokio::test]
async fn a_soft_group_invalidation_serves_the_old_pages_stale_while_they_are_rebuilt() {
    let cluster = RedisCluster::shared();
    let store = cluster.store("soft");
    let cache = patient_cache(store.clone());
    let hits = Hits::new();
    let app = app(&cache, &hits);
    let offers = uris("/offers", 6);
    warm(&app, &offers).await;
    let mut cached = Vec::new();
    for uri in &offers {
        cached.push(fetch(&app, uri).await.text());
    }
    let before = hits.get();

    // Through another process: each page is served as it was, stale, once, while
    // its rebuild runs; then the rebuilt page is a hit.
    let other = patient_cache(cluster.store_in(store.namespace()));
    other
        .invalidate_group_soft("products")
        .await
        .expect("invalidated");
    for (uri, cached) in offers.iter().zip(&cached) {
        let stale = fetch(&app, uri).await;
        assert_eq!(&stale.text(), cached);
        assert_eq!(
            stale.cache_status(),
            "cache-page; hit; detail=invalidated; ttl=0"
        );
    }
    eventually(
        Duration::from_secs(10),
        "every page was rebuilt",
        async || hits.get() == before + offers.len(),
    )
    .await;
    for (uri, cached) in offers.iter().zip(&cached) {
        eventually(
            Duration::from_secs(10),
            "the rebuilt page is a hit",
            async || {
                let reply = fetch(&app, uri).await;
                reply.is_hit() && &reply.text() != cached
            },
        )
        .await;
    }
    assert_eq!(hits.get(), before + offers.len());

    // A hard invalidation after it leaves nothing old to serve.
    cache
        .invalidate_group_soft("products")
        .await
        .expect("invalidated");
    cache
        .invalidate_group("products")
        .await
        .expect("invalidated");
    assert_cached(&app, &offers, false).await;
    assert_no_cross_slot(&cluster);
}

#[tokio::test]
async fn invalidating_a_path_or_a_url_invalidates_its_pages_only() {
    let cluster = RedisCluster::shared();
    let cache = cluster.cache("path_url");
    let hits = Hits::new();
    let app = app(&cache, &hits);
    let one_a = vec!["/items/1?a=1".to_owned()];
    let one_b = vec!["/items/1?a=2".to_owned()];
    let two = vec!["/items/2?a=1".to_owned()];
    for uris in [&one_a, &one_b, &two] {
        warm(&app, uris).await;
    }

    cache
        .invalidate_url("/items/1?a=1")
        .await
        .expect("invalidated");
    assert_cached(&app, &one_a, false).await;
    assert_cached(&app, &one_b, true).await;
    assert_cached(&app, &two, true).await;
    assert_cached(&app, &one_a, true).await;

    cache
        .invalidate_path("/items/1")
        .await
        .expect("invalidated");
    assert_cached(&app, &one_a, false).await;
    assert_cached(&app, &one_b, false).await;
    assert_cached(&app, &two, true).await;
    assert_no_cross_slot(&cluster);
}

#[tokio::test]
async fn an_invalidated_page_never_returns_after_its_version_key_is_lost() {
    let cluster = RedisCluster::shared();
    let store = cluster.store("version_loss");
    let version_key = store.version_key(Version::Group("products"));
    let cache = patient_cache(store.clone());
    let hits = Hits::new();
    let app = app(&cache, &hits);

    assert_eq!(fetch(&app, "/products/1").await.text(), "/products/1 run 1");
    assert!(fetch(&app, "/products/1").await.is_hit());
    let old_pages = page_keys(&cluster, &store).await;
    assert_eq!(old_pages.len(), 1);

    cache
        .invalidate_group("products")
        .await
        .expect("invalidated");
    let deleted: u64 = cluster.cmd(&["DEL", &version_key]).await;
    assert_eq!(deleted, 1, "the group's version key is {version_key}");
    let exists: u64 = cluster.cmd(&["EXISTS", &old_pages[0]]).await;
    assert_eq!(
        exists, 1,
        "the old page must still be stored for this test to mean anything"
    );

    // A process that never saw the group, then this one: neither gets the old page.
    let other = self::app(&patient_cache(cluster.store_in(store.namespace())), &hits);
    let from_other = fetch(&other, "/products/1").await;
    assert!(!from_other.is_hit(), "the invalidated page came back");
    assert_eq!(from_other.text(), "/products/1 run 2");
    let from_this = fetch(&app, "/products/1").await;
    assert_eq!(
        from_this.text(),
        "/products/1 run 2",
        "the invalidated page came back"
    );
    assert_eq!(hits.get(), 2);
    assert_no_cross_slot(&cluster);
}

#[tokio::test]
async fn a_damaged_entry_is_a_miss_and_is_replaced() {
    let cluster = RedisCluster::shared();
    let store = cluster.store("damaged");
    let hits = Hits::new();
    let app = app(&patient_cache(store.clone()), &hits);

    assert_eq!(fetch(&app, "/items/7").await.text(), "/items/7 run 1");
    assert!(fetch(&app, "/items/7").await.is_hit());
    let pages = page_keys(&cluster, &store).await;
    assert_eq!(pages.len(), 1);
    let () = cluster
        .cmd(&["SET", &pages[0], "CPE\u{1}not an entry"])
        .await;

    let after = fetch(&app, "/items/7").await;
    assert_eq!(after.status, 200);
    assert!(!after.is_hit(), "a damaged entry was served");
    assert_eq!(after.text(), "/items/7 run 2");
    let again = fetch(&app, "/items/7").await;
    assert!(again.is_hit(), "the damaged entry was not replaced");
    assert_eq!(again.text(), "/items/7 run 2");
    assert_no_cross_slot(&cluster);
}

#[tokio::test]
async fn deleting_a_tag_deletes_its_pages_on_every_node() {
    let cluster = RedisCluster::shared();
    let store = cluster.store("tags");
    let cache = patient_cache(store.clone());
    let hits = Hits::new();
    let app = app(&cache, &hits);
    // Twelve pages: all on one node with probability 3^-11.
    let pages = uris("/tagged", 12);
    let untagged = vec!["/products/1".to_owned()];
    warm(&app, &pages).await;
    warm(&app, &untagged).await;

    let tag_key = store.tag_key("catalogue");
    let members: Vec<String> = cluster.cmd(&["SMEMBERS", &tag_key]).await;
    assert_eq!(
        members.len(),
        pages.len(),
        "every tagged page is in its tag"
    );
    let keys: Vec<String> = members.iter().map(|h| store.page_key(h)).collect();
    let nodes: BTreeSet<usize> = keys.iter().map(|k| cluster.node_for_key(k)).collect();
    assert!(
        nodes.len() > 1,
        "the tagged pages are all on node {nodes:?}"
    );
    let tag_node = cluster.node_for_key(&tag_key);
    assert!(nodes.iter().any(|n| *n != tag_node));

    let deleted = cache.invalidate_tag("catalogue").await.expect("deleted");
    assert_eq!(deleted, pages.len() as u64);
    for key in &keys {
        let exists: u64 = cluster.cmd(&["EXISTS", key]).await;
        assert_eq!(exists, 0, "{key} survived its tag");
    }
    let tag_left: u64 = cluster.cmd(&["EXISTS", &tag_key]).await;
    assert_eq!(tag_left, 0, "the tag's members were not removed");
    assert_cached(&app, &untagged, true).await;
    assert_cached(&app, &pages, false).await;
    assert_cached(&app, &pages, true).await;
    // Pages deleted by a tag are missing for another process too.
    cache.invalidate_tag("catalogue").await.expect("deleted");
    let other = self::app(&patient_cache(cluster.store_in(store.namespace())), &hits);
    assert_cached(&other, &pages, false).await;
    let members: Vec<String> = cluster.cmd(&["SMEMBERS", &tag_key]).await;
    assert_eq!(
        members.len(),
        pages.len(),
        "the pages stored again are tagged"
    );
    assert_eq!(cache.invalidate_tag("no-page-has-it").await.expect("ok"), 0);
    assert_no_cross_slot(&cluster);
}

#[tokio::test]
async fn store_operations_on_single_keys() {
    let cluster = RedisCluster::shared();
    let store = cluster.store("store_api");

    assert!(store.lock("h", Duration::from_secs(5)).await.expect("lock"));
    assert!(!store.lock("h", Duration::from_secs(5)).await.expect("lock"));
    store.unlock("h").await.expect("unlock");
    assert!(store.lock("h", Duration::from_secs(5)).await.expect("lock"));

    let v = store.version(Version::Group("g")).await.expect("seeded");
    assert_eq!(store.version(Version::Group("g")).await.expect("read"), v);
    assert_eq!(
        store.bump(Version::Group("g")).await.expect("bumped"),
        v + 1
    );
    // A missing path version is seeded by the bump, and expires.
    let path = Version::Path("/never-seen");
    assert!(store.bump(path).await.expect("bumped") > v);
    let ttl: i64 = cluster.cmd(&["TTL", &store.version_key(path)]).await;
    assert!(ttl > 0, "a path version has a TTL, got {ttl}");

    assert!(store.get("0123").await.expect("get").is_none());
    assert!(!store.remove("0123").await.expect("remove"));
    assert_eq!(store.delete_tag("none").await.expect("delete"), 0);
    assert_no_cross_slot(&cluster);
}

#[tokio::test]
async fn a_hit_is_one_get_per_key_sent_at_once_and_nothing_else() {
    let cluster = RedisCluster::start();
    let hits = Hits::new();
    let app = app(&cluster.cache("round_trip"), &hits);
    const N: u64 = 20;
    let uri = "/products/1";
    // The miss stores the page; the first hit teaches the process the group version.
    fetch(&app, uri).await;
    assert!(fetch(&app, uri).await.is_hit());

    let before = cluster.command_calls();
    for _ in 0..N {
        assert!(fetch(&app, uri).await.is_hit());
    }
    let after = cluster.command_calls();
    let grown: BTreeMap<String, u64> = after
        .into_iter()
        .filter(|(name, _)| name != "info")
        .filter_map(|(name, calls)| {
            let grown = calls - before.get(&name).copied().unwrap_or(0);
            (grown > 0).then_some((name, grown))
        })
        .collect();
    // The group's, the path's and the URL's versions, and the entry.
    let expected = BTreeMap::from([("get".to_owned(), 4 * N)]);
    assert_eq!(grown, expected, "commands run for {N} hits");
    assert_eq!(hits.get(), 1);
    assert_no_cross_slot(&cluster);
}

/// Requests sent without pause, in the background, until stopped.
struct Load {
    stop: Arc<AtomicBool>,
    replies: Arc<Mutex<Vec<Reply>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Load {
    fn start(app: Router, uris: Vec<String>) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let replies = Arc::new(Mutex::new(Vec::new()));
        let task = tokio::spawn({
            let (stop, replies) = (stop.clone(), replies.clone());
            async move {
                for uri in uris.iter().cycle() {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    let reply = fetch(&app, uri).await;
                    replies.lock().expect("not poisoned").push(reply);
                    // A request served without any I/O (the circuit breaker open)
                    // completes without yielding: yield, or this loop would hold
                    // its worker thread for good.
                    tokio::task::yield_now().await;
                }
            }
        });
        Load {
            stop,
            replies,
            task,
        }
    }

    fn answered(&self) -> usize {
        self.replies.lock().expect("not poisoned").len()
    }

    /// Waits until `n` more requests were answered.
    async fn wait_for(&self, n: usize, what: &str) {
        let target = self.answered() + n;
        eventually(Duration::from_secs(10), what, async || {
            self.answered() >= target
        })
        .await;
    }

    /// Stops the load; checks that every request was answered `200`, and returns how
    /// many were.
    async fn stop(self) -> usize {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.expect("the load task did not panic");
        let replies = self.replies.lock().expect("not poisoned");
        let failed: Vec<&Reply> = replies.iter().filter(|r| r.status != 200).collect();
        assert!(failed.is_empty(), "requests failed: {failed:?}");
        replies.len()
    }
}

/// Waits (at most 15 s) until every URI is served from the cache again.
async fn assert_caching_resumes(app: &Router, uris: &[String]) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let mut missed = Vec::new();
        for uri in uris {
            let reply = fetch(app, uri).await;
            assert_eq!(reply.status, 200, "{uri} failed");
            if !reply.is_hit() {
                missed.push(format!("{uri}: {}", reply.cache_status()));
            }
        }
        if missed.is_empty() {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "caching did not resume within 15 s: {missed:?}"
        );
        // Bounded polling: the interval between checks, not a wait for an event.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_restart_under_load_fails_no_request_and_caching_resumes() {
    let mut cluster = RedisCluster::start();
    let cache = default_cache(&cluster, "restart");
    let hits = Hits::new();
    let app = app(&cache, &hits);
    let pages = uris("/products", 6);
    warm(&app, &pages).await;

    let load = Load::start(app.clone(), pages.clone());
    load.wait_for(10, "requests were served before the stop")
        .await;
    tokio::task::block_in_place(|| cluster.stop_node(0));
    load.wait_for(20, "requests were served while node 0 was down")
        .await;
    tokio::task::block_in_place(|| cluster.restart_node(0));
    assert_caching_resumes(&app, &pages).await;
    let answered = load.stop().await;
    assert!(answered >= 30, "only {answered} requests under load");

    cache
        .invalidate_group("products")
        .await
        .expect("invalidations work again");
    assert_cached(&app, &pages, false).await;
    assert_cached(&app, &pages, true).await;
    assert_no_cross_slot(&cluster);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failover_to_a_replica_under_load_fails_no_request_and_caching_resumes() {
    let mut cluster = RedisCluster::start_with_replicas();
    let store = RedisClusterStore::builder(cluster.urls())
        .namespace(unique_namespace("failover"))
        .build()
        .expect("valid URLs");
    let cache = Cache::new(store.clone());
    let hits = Hits::new();
    let app = app(&cache, &hits);
    let pages = uris("/products", 6);
    warm(&app, &pages).await;
    // The master holding the group's version: every page depends on it.
    let victim = cluster.node_for_key(&store.version_key(Version::Group("products")));

    let load = Load::start(app.clone(), pages.clone());
    load.wait_for(10, "requests were served before the failover")
        .await;
    tokio::task::block_in_place(|| cluster.kill_master(victim));
    assert!(!cluster.is_running(victim));
    assert_caching_resumes(&app, &pages).await;
    let answered = load.stop().await;
    assert!(answered >= 10, "only {answered} requests under load");

    cache
        .invalidate_group("products")
        .await
        .expect("invalidations work after the failover");
    assert_cached(&app, &pages, false).await;
    assert_cached(&app, &pages, true).await;
    assert_no_cross_slot(&cluster);
}

/// With `wait_for_replicas`, an invalidation (a bump, a tag or a key deletion) says
/// `Ok` only once a replica has it, so a failover cannot lose it; with no replica to
/// answer it says so, and is in force on its master all the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_wait_for_replicas_an_invalidation_is_ok_once_a_replica_has_it() {
    let mut cluster = RedisCluster::start_with_replicas();
    let store = RedisClusterStore::builder(cluster.urls())
        .namespace(unique_namespace("wait"))
        .command_timeout(Duration::from_secs(2))
        .wait_for_replicas(1, Duration::from_secs(3))
        .build()
        .expect("valid URLs");
    let cache = patient_cache(store.clone());
    let hits = Hits::new();
    let app = app(&cache, &hits);
    let pages = uris("/products", 3);
    warm(&app, &pages).await;

    let before = cache.group_version("products").await.expect("a version");
    // On a cluster this new, the first WAIT can take a second (replicas also report
    // their offset once a second); then it answers in about a millisecond.
    let after = cache
        .invalidate_group("products")
        .await
        .expect("a replica acknowledged it");
    assert_eq!(after, before + 1);
    assert_cached(&app, &pages, false).await;
    assert_cached(&app, &pages, true).await;
    // Deletions wait too: a key's on its page's node, a tag's on every master.
    let (tagged, items) = (uris("/tagged", 3), uris("/items", 1));
    warm(&app, &tagged).await;
    warm(&app, &items).await;
    let deleted = cache.invalidate_tag("catalogue").await;
    assert_eq!(deleted.expect("replicas acknowledged it"), 3);
    assert_cached(&app, &tagged, false).await;
    let removed = cache.invalidate_key("", &[], "/items/1").await;
    assert!(removed.expect("a replica acknowledged it"));
    assert_cached(&app, &items, false).await;

    let replicas: Vec<usize> = (0..cluster.node_count())
        .filter(|&i| !cluster.is_master(i))
        .collect();
    assert_eq!(replicas.len(), 3);
    tokio::task::block_in_place(|| {
        for &i in &replicas {
            cluster.stop_node(i);
        }
    });
    match cache.invalidate_group("products").await {
        Err(Error::NotReplicated {
            wanted: 1,
            acknowledged: 0,
        }) => {}
        other => panic!("with no replica up: {other:?}"),
    }
    assert_eq!(
        cache.group_version("products").await.expect("a version"),
        after + 1,
        "the invalidation is in force on its master"
    );
    for deletion in [
        cache.invalidate_tag("catalogue").await.map(|_| ()),
        cache.invalidate_key("", &[], "/items/1").await.map(|_| ()),
    ] {
        match deletion {
            Err(Error::NotReplicated {
                wanted: 1,
                acknowledged: 0,
            }) => {}
            other => panic!("a deletion with no replica up: {other:?}"),
        }
    }
    // Both deletions are in force on their masters all the same.
    assert_cached(&app, &tagged, false).await;
    assert_cached(&app, &items, false).await;
    // Requests never wait on a WAIT: the pages are served, and cached again.
    assert_cached(&app, &pages, false).await;
    assert_cached(&app, &pages, true).await;
    assert_no_cross_slot(&cluster);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_are_answered_while_the_cluster_is_down_at_start() {
    let mut cluster = RedisCluster::start();
    let nodes: Vec<usize> = (0..cluster.node_count()).collect();
    for &i in &nodes {
        cluster.stop_node(i);
    }
    // Built and first used while no node answers.
    let cache = default_cache(&cluster, "down_at_start");
    let hits = Hits::new();
    let app = app(&cache, &hits);
    for n in 1..=3 {
        let reply = fetch(&app, "/products/1").await;
        assert_eq!(
            reply.status, 200,
            "a request failed while the cluster was down"
        );
        assert!(!reply.is_hit());
        assert_eq!(reply.text(), format!("/products/1 run {n}"));
    }
    assert!(
        cache.invalidate_group("products").await.is_err(),
        "an invalidation that did not happen said Ok"
    );

    tokio::task::block_in_place(|| cluster.restart_nodes(&nodes));
    assert_caching_resumes(&app, &["/products/1".to_owned()]).await;
    cache
        .invalidate_group("products")
        .await
        .expect("invalidations work once the cluster is up");
    assert_no_cross_slot(&cluster);
}
