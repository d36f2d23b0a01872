//! Entries as they lie in Redis: under the store's namespace, with the page's timeout
//! as TTL; a damaged entry or version is a miss that heals itself, never a panic.

use axum::{Extension, Router, extract::State, routing::get};
use cache_page_runtime::{Cache, RedisStore, Version, cache_page};
use cache_page_tests::{Hits, RedisServer, fetch, patient_cache};

#[cache_page(timeout = 60, group = "g")]
async fn page(State(hits): State<Hits>) -> String {
    format!("run {}", hits.bump())
}

fn app(cache: &Cache, hits: &Hits) -> Router {
    Router::new()
        .route("/page/{n}", get(page))
        .with_state(hits.clone())
        .layer(Extension(cache.clone()))
}

async fn page_keys(server: &RedisServer, store: &RedisStore) -> Vec<String> {
    let mut keys: Vec<String> = server.cmd(&["KEYS", &store.page_key("*")]).await;
    keys.sort();
    keys
}

/// Requests `uri` on an empty page and returns the Redis key of the entry it stored.
async fn store_page(server: &RedisServer, store: &RedisStore, app: &Router, uri: &str) -> String {
    let before = page_keys(server, store).await;
    let miss = fetch(app, uri).await;
    assert!(!miss.is_hit());
    assert!(fetch(app, uri).await.is_hit(), "{uri} was not cached");
    let mut new: Vec<String> = page_keys(server, store)
        .await
        .into_iter()
        .filter(|k| !before.contains(k))
        .collect();
    assert_eq!(new.len(), 1, "one request stored one entry: {new:?}");
    new.remove(0)
}

#[tokio::test]
async fn keys_live_under_the_namespace_with_the_timeout_as_ttl() {
    let server = RedisServer::start();
    let store = server.store("keys_live_under_the_namespace");
    let cache = patient_cache(store.clone());
    let app = app(&cache, &Hits::new());
    let page_key = store_page(&server, &store, &app, "/page/1").await;
    assert!(
        page_key.starts_with(&format!("{}:page:", store.namespace())),
        "{page_key}"
    );

    let ttl: i64 = server.cmd(&["TTL", &page_key]).await;
    assert!(
        (1..=60).contains(&ttl),
        "the page's TTL is its timeout, got {ttl}"
    );
    let version_key = store.version_key(Version::Group("g"));
    let version_ttl: i64 = server.cmd(&["TTL", &version_key]).await;
    assert_eq!(
        version_ttl, -1,
        "a group version ({version_key}) never expires"
    );
}

#[tokio::test]
async fn damaged_entry_is_a_miss_and_is_replaced() {
    let server = RedisServer::start();
    let store = server.store("damaged_entry");
    let cache = patient_cache(store.clone());
    let hits = Hits::new();
    let app = app(&cache, &hits);

    let page_key = store_page(&server, &store, &app, "/page/0").await;
    let mut conn = server.cli().await;
    let good: Vec<u8> = conn.query(redis::cmd("GET").arg(&page_key)).await;

    let mut flipped = good.clone();
    flipped[0] ^= 0xff;
    let mut long_body = good.clone();
    long_body.extend_from_slice(&[0xff; 16]);
    let damages: Vec<(&str, Vec<u8>)> = vec![
        ("garbage", b"definitely not a cache-page entry".to_vec()),
        ("empty", Vec::new()),
        ("truncated", good[..good.len() / 2].to_vec()),
        ("one byte short", good[..good.len() - 1].to_vec()),
        ("bad magic", flipped),
        ("trailing bytes", long_body),
        ("all bytes", (0..=255u8).collect()),
    ];
    for (n, (what, damage)) in damages.into_iter().enumerate() {
        let uri = format!("/page/{}", n + 1);
        let key = store_page(&server, &store, &app, &uri).await;
        let () = conn
            .query(redis::cmd("SET").arg(&key).arg(damage).arg("EX").arg(60))
            .await;

        let before = hits.get();
        let after = fetch(&app, &uri).await;
        assert_eq!(
            after.status, 200,
            "{what}: a damaged entry failed the request"
        );
        assert!(!after.is_hit(), "{what}: a damaged entry was served");
        assert_eq!(hits.get(), before + 1, "{what}: the handler did not run");
        let healed = fetch(&app, &uri).await;
        assert!(
            healed.is_hit(),
            "{what}: the damaged entry was not replaced"
        );
        assert_eq!(healed.body, after.body);
    }
}

#[tokio::test]
async fn damaged_version_is_replaced() {
    let server = RedisServer::start();
    let store = server.store("damaged_version");
    let cache = patient_cache(store.clone());
    let hits = Hits::new();
    let app = app(&cache, &hits);

    assert_eq!(fetch(&app, "/page/1").await.text(), "run 1");
    assert!(fetch(&app, "/page/1").await.is_hit());
    let version_key = store.version_key(Version::Group("g"));
    let () = server.cmd(&["SET", &version_key, "not a number"]).await;

    let after = fetch(&app, "/page/1").await;
    assert_eq!(after.status, 200, "a damaged version failed the request");
    assert_ne!(
        after.text(),
        "run 1",
        "a page was served under a damaged version"
    );
    let healed = fetch(&app, "/page/1").await;
    assert!(
        healed.is_hit(),
        "caching did not resume after a damaged version"
    );
    cache
        .invalidate_group("g")
        .await
        .expect("the group can be invalidated again");
    assert!(!fetch(&app, "/page/1").await.is_hit());
}

/// The header limit is checked after the cache adds its own headers
/// (`Cache-Control`, `Expires`, `ETag`): a response that fits only without them is
/// refused whole, and one that fits with them keeps them on hits (an entry is never
/// cut short when it is encoded for Redis).
#[tokio::test]
async fn the_header_limit_counts_the_headers_the_cache_adds() {
    use axum::response::IntoResponse;

    fn with_headers(n: usize) -> axum::response::Response {
        let mut response = "many headers".into_response(); // + content-type
        for i in 0..n {
            response.headers_mut().insert(
                axum::http::HeaderName::try_from(format!("x-h{i}")).expect("a header name"),
                axum::http::HeaderValue::from_static("1"),
            );
        }
        response
    }
    let server = RedisServer::start();
    let layer =
        || cache_page_runtime::CachePageLayer::new(cache_page_runtime::PageConfig::new(60u64));
    let app = Router::new()
        // 1 + 1023 = 1024 headers: at the limit before the cache adds three.
        .route("/full", get(async || with_headers(1023)).layer(layer()))
        // 1 + 1020 + 3 = 1024: fits with them.
        .route("/fits", get(async || with_headers(1020)).layer(layer()))
        .layer(Extension(server.cache("header_limit")));

    for _ in 0..2 {
        let reply = fetch(&app, "/full").await;
        assert_eq!(
            (reply.status.as_u16(), reply.text().as_str()),
            (200, "many headers")
        );
        assert!(
            reply.cache_status().contains("detail=too-many-headers"),
            "{}",
            reply.cache_status()
        );
    }
    fetch(&app, "/fits").await;
    let hit = fetch(&app, "/fits").await;
    assert!(hit.is_hit(), "{}", hit.cache_status());
    for name in ["etag", "cache-control", "expires"] {
        assert!(hit.header(name).is_some(), "a hit lost {name}");
    }
}

#[cache_page(timeout = 3600)]
async fn long_page() -> &'static str {
    "kept an hour"
}

#[cache_page(timeout = 3600)]
async fn missing() -> (axum::http::StatusCode, &'static str) {
    (axum::http::StatusCode::NOT_FOUND, "no such page")
}

/// A URL's path and URL versions live five minutes when seeded (a URL whose page is
/// never stored leaves nothing behind for long), and as long as the page once one is
/// stored under them.
#[tokio::test]
async fn path_and_url_versions_live_as_long_as_their_pages() {
    let server = RedisServer::start();
    let store = server.store("scope_ttl");
    let app = Router::new()
        .route("/long", get(long_page))
        .route("/uncached", get(missing))
        .route("/page/{n}", get(page))
        .with_state(Hits::new())
        .layer(Extension(patient_cache(store.clone())));
    let ttl = async |version: Version<'_>| -> i64 {
        server.cmd(&["TTL", &store.version_key(version)]).await
    };

    fetch(&app, "/uncached?x=1").await; // a 404: nothing stored
    assert!((1..=300).contains(&ttl(Version::Url("/uncached?x=1")).await));
    fetch(&app, "/page/7").await; // a 60 s page: its URL's version keeps its 300 s
    assert!((1..=300).contains(&ttl(Version::Url("/page/7")).await));
    fetch(&app, "/long?a=1").await;
    for version in [Version::Path("/long"), Version::Url("/long?a=1")] {
        let ttl = ttl(version).await;
        assert!((3000..=3600).contains(&ttl), "{version:?}: {ttl}");
    }
    let invalidated = Cache::new(store.clone());
    invalidated
        .invalidate_url("/long?a=1")
        .await
        .expect("invalidated");
    assert!(
        ttl(Version::Url("/long?a=1")).await > 3600,
        "an invalidated URL is kept a week"
    );
}
