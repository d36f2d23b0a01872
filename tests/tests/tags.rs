//! Tags: `Cache::invalidate_tag` deletes every page stored with a tag, fixed or
//! computed from the request, at once (memory freed now), and no other page; on
//! Redis the tag's set expires with its longest page.

use axum::{
    Extension, Router,
    extract::State,
    http::{Uri, request::Parts},
    routing::get,
};
use cache_page_runtime::{Cache, MemoryStore, cache_page};
use cache_page_tests::{Hits, RedisServer, both_stores, fetch, patient_cache};

#[cache_page(timeout = 60, tag = "t")]
async fn tagged(State(hits): State<Hits>, uri: Uri) -> String {
    format!("{uri} run {}", hits.bump())
}

#[cache_page(timeout = 60, tag = "t", tag = "u")]
async fn two_tags(State(hits): State<Hits>, uri: Uri) -> String {
    format!("{uri} run {}", hits.bump())
}

#[cache_page(timeout = 60)]
async fn untagged(State(hits): State<Hits>, uri: Uri) -> String {
    format!("{uri} run {}", hits.bump())
}

/// `/shelf/<name>/...` is tagged `shelf:<name>`.
fn shelf_tag(parts: &Parts) -> String {
    let name = parts.uri.path().split('/').nth(2).unwrap_or("");
    format!("shelf:{name}")
}

#[cache_page(timeout = 60, tag = shelf_tag)]
async fn shelf(State(hits): State<Hits>, uri: Uri) -> String {
    format!("{uri} run {}", hits.bump())
}

fn app(cache: &Cache, hits: &Hits) -> Router {
    Router::new()
        .route("/tagged/{id}", get(tagged))
        .route("/two-tags", get(two_tags))
        .route("/untagged", get(untagged))
        .route("/shelf/{name}/{id}", get(shelf))
        .with_state(hits.clone())
        .layer(Extension(cache.clone()))
}

/// Requests each URI twice: stored, then a hit. Returns the stored bodies.
async fn warm(app: &Router, uris: &[&str]) -> Vec<String> {
    let mut bodies = Vec::new();
    for uri in uris {
        bodies.push(fetch(app, uri).await.text());
        assert!(fetch(app, uri).await.is_hit(), "{uri} was not cached");
    }
    bodies
}

/// Each URI is served its stored page (`cached`) or runs the handler again.
async fn assert_cached(app: &Router, uris: &[&str], old: &[String], cached: bool) {
    for (uri, old) in uris.iter().zip(old) {
        let reply = fetch(app, uri).await;
        if cached {
            assert!(
                reply.is_hit(),
                "{uri} lost its page: {:?}",
                reply.cache_status()
            );
            assert_eq!(&reply.text(), old);
        } else {
            assert_eq!(
                reply.cache_status(),
                "cache-page; fwd=uri-miss; stored; ttl=60",
                "{uri}: its deleted page was served ({})",
                reply.text()
            );
            assert_ne!(&reply.text(), old, "{uri}: its deleted page was served");
        }
    }
}

async fn a_tag_deletes_its_pages_and_no_other(cache: Cache) {
    let hits = Hits::new();
    let app = app(&cache, &hits);
    let tagged = ["/tagged/1", "/tagged/2", "/tagged/3?x=1", "/two-tags"];
    let others = ["/untagged", "/shelf/books/1"];
    let tagged_bodies = warm(&app, &tagged).await;
    let other_bodies = warm(&app, &others).await;

    let deleted = cache.invalidate_tag("t").await.expect("deleted");
    assert_eq!(deleted, tagged.len() as u64);
    assert_eq!(cache.invalidate_tag("t").await.expect("deleted"), 0);
    assert_eq!(cache.invalidate_tag("no-page-has-it").await.expect("ok"), 0);
    assert_cached(&app, &others, &other_bodies, true).await;
    assert_cached(&app, &tagged, &tagged_bodies, false).await;

    // The second tag of /two-tags still names its new page.
    let two = warm(&app, &["/two-tags"]).await;
    assert_eq!(cache.invalidate_tag("u").await.expect("deleted"), 1);
    assert_cached(&app, &["/two-tags"], &two, false).await;
}

async fn a_computed_tag(cache: Cache) {
    let hits = Hits::new();
    let app = app(&cache, &hits);
    let books = ["/shelf/books/1", "/shelf/books/2"];
    let toys = ["/shelf/toys/1"];
    let book_bodies = warm(&app, &books).await;
    let toy_bodies = warm(&app, &toys).await;
    assert_eq!(
        cache.invalidate_tag("shelf:books").await.expect("deleted"),
        2
    );
    assert_cached(&app, &toys, &toy_bodies, true).await;
    assert_cached(&app, &books, &book_bodies, false).await;
}

both_stores!(a_tag_deletes_its_pages_and_no_other, a_computed_tag);

#[tokio::test]
async fn memory_is_freed_at_once() {
    let store = MemoryStore::new();
    let app = app(&patient_cache(store.clone()), &Hits::new());
    warm(&app, &["/tagged/1", "/tagged/2", "/untagged"]).await;
    assert_eq!(store.entry_count(), 3);
    let before = store.weighted_size();
    patient_cache(store.clone())
        .invalidate_tag("t")
        .await
        .expect("deleted");
    assert_eq!(store.entry_count(), 1);
    assert!(store.weighted_size() < before);
}

#[tokio::test]
async fn redis_deletes_the_page_keys_and_the_tag_set_expires() {
    let server = RedisServer::start();
    let store = server.store("tags_redis");
    let cache = patient_cache(store.clone());
    let app = app(&cache, &Hits::new());
    warm(&app, &["/tagged/1", "/tagged/2", "/untagged"]).await;

    let tag_key = store.tag_key("t");
    let ttl: i64 = server.cmd(&["TTL", &tag_key]).await;
    assert!(0 < ttl && ttl <= 60, "the tag set's TTL is {ttl}");
    let hashes: Vec<String> = server.cmd(&["SMEMBERS", &tag_key]).await;
    assert_eq!(hashes.len(), 2, "the tag holds its two pages");
    let pages: Vec<String> = hashes.iter().map(|h| store.page_key(h)).collect();
    for page in &pages {
        let exists: u64 = server.cmd(&["EXISTS", page]).await;
        assert_eq!(exists, 1, "{page} is not stored");
    }
    let all_pages: Vec<String> = server.cmd(&["KEYS", &store.page_key("*")]).await;
    assert_eq!(all_pages.len(), 3);

    assert_eq!(cache.invalidate_tag("t").await.expect("deleted"), 2);
    for page in &pages {
        let exists: u64 = server.cmd(&["EXISTS", page]).await;
        assert_eq!(exists, 0, "{page} survived its tag");
    }
    let tag_left: u64 = server.cmd(&["EXISTS", &tag_key]).await;
    assert_eq!(tag_left, 0, "the tag set was left behind");
    let left: Vec<String> = server.cmd(&["KEYS", &store.page_key("*")]).await;
    assert_eq!(left.len(), 1, "the untagged page went too");
}
