//! Which requests share a page: different keys miss, equivalent URLs hit, and values
//! that contain separators never collide with other keys.

use axum::{
    Extension, Router,
    extract::State,
    http::{Uri, request::Parts},
    routing::get,
};
use cache_page_runtime::{Cache, cache_page, keys};
use cache_page_tests::{Hits, both_stores, fetch, fetch_with};

/// The default key: host, path and the whole query.
#[cache_page(timeout = 60)]
async fn echo(State(hits): State<Hits>, uri: Uri) -> String {
    format!("run {} for {uri}", hits.bump())
}

#[cache_page(timeout = 60, key = keys::path_key)]
async fn by_path(State(hits): State<Hits>, uri: Uri) -> String {
    format!("run {} for {uri}", hits.bump())
}

#[cache_page(timeout = 60, key = keys::query_params(&["page"]))]
async fn by_page(State(hits): State<Hits>, uri: Uri) -> String {
    format!("run {} for {uri}", hits.bump())
}

fn by_language(parts: &Parts) -> String {
    let lang = parts
        .headers
        .get("accept-language")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    format!("{}|{lang}", parts.uri.path())
}

#[cache_page(timeout = 60, key = by_language)]
async fn localized(State(hits): State<Hits>, uri: Uri) -> String {
    format!("run {} for {uri}", hits.bump())
}

fn app(cache: &Cache, hits: &Hits) -> Router {
    Router::new()
        .route("/", get(echo))
        .route("/{*rest}", get(echo))
        .route("/by-path", get(by_path))
        .route("/by-page", get(by_page))
        .route("/localized", get(localized))
        .with_state(hits.clone())
        .layer(Extension(cache.clone()))
}

/// Requests every URI of `distinct` twice: each runs the handler once, and its second
/// request is a hit on its own page.
async fn assert_distinct_pages(app: &Router, hits: &Hits, distinct: &[&str]) {
    let mut bodies = Vec::new();
    for uri in distinct {
        let miss = fetch(app, uri).await;
        assert!(
            !miss.is_hit(),
            "{uri} was served a page cached for another URI: {}",
            miss.text()
        );
        bodies.push(miss.text());
    }
    assert_eq!(hits.get(), distinct.len());
    for (uri, body) in distinct.iter().zip(&bodies) {
        let hit = fetch(app, uri).await;
        assert!(hit.is_hit(), "{uri} was not cached");
        assert_eq!(&hit.text(), body, "{uri} got another URI's page");
    }
    assert_eq!(hits.get(), distinct.len());
}

async fn different_paths_miss(cache: Cache) {
    let hits = Hits::new();
    assert_distinct_pages(&app(&cache, &hits), &hits, &["/one", "/two", "/one/two"]).await;
}

async fn different_query_values_miss(cache: Cache) {
    let hits = Hits::new();
    let uris = [
        "/list?page=1",
        "/list?page=2",
        "/list",
        "/list?page=1&page=2",
        "/list?Page=1",
    ];
    assert_distinct_pages(&app(&cache, &hits), &hits, &uris).await;
}

async fn same_query_in_another_order_is_a_hit(cache: Cache) {
    let hits = Hits::new();
    let app = app(&cache, &hits);
    let miss = fetch(&app, "/list?a=1&b=2").await;
    let hit = fetch(&app, "/list?b=2&a=1").await;
    assert!(hit.is_hit(), "reordered query was a miss: {}", hit.text());
    assert_eq!(hit.body, miss.body);
    let encoded = fetch(&app, "/list?a=%31&b=2").await;
    assert!(encoded.is_hit(), "a percent-encoded equivalent was a miss");
    assert_eq!(hits.get(), 1);
}

async fn separators_in_values_do_not_collide(cache: Cache) {
    let hits = Hits::new();
    let uris = [
        "/?a=1-b:2",
        "/?a=1&b=2",
        "/?a=1%26b%3D2",
        "/?a=1:b-2",
        "/?a1=b2",
    ];
    assert_distinct_pages(&app(&cache, &hits), &hits, &uris).await;
}

async fn similar_paths_do_not_collide(cache: Cache) {
    let hits = Hits::new();
    let uris = ["/a-b", "/ab", "/a/b", "/a:b", "/a_b"];
    assert_distinct_pages(&app(&cache, &hits), &hits, &uris).await;
}

async fn path_key_ignores_the_query(cache: Cache) {
    let hits = Hits::new();
    let app = app(&cache, &hits);
    let miss = fetch(&app, "/by-path?x=1").await;
    for uri in ["/by-path?x=2", "/by-path?x=1", "/by-path", "/by-path?x=2"] {
        let hit = fetch(&app, uri).await;
        assert!(
            hit.is_hit(),
            "{uri} did not share the page of its path: {:?}",
            hit.text()
        );
        assert_eq!(hit.body, miss.body);
    }
    assert_eq!(hits.get(), 1);
}

async fn query_params_key_keeps_only_the_listed_names(cache: Cache) {
    let hits = Hits::new();
    let app = app(&cache, &hits);
    let miss = fetch(&app, "/by-page?page=1&utm_source=a").await;
    let hit = fetch(&app, "/by-page?utm_source=b&page=1").await;
    assert!(
        hit.is_hit(),
        "an unlisted parameter split the cache: {:?}",
        hit.text()
    );
    assert_eq!(hit.body, miss.body);
    let other = fetch(&app, "/by-page?page=2&utm_source=a").await;
    assert!(
        !other.is_hit(),
        "a listed parameter did not split the cache"
    );
    assert_eq!(hits.get(), 2);
}

async fn custom_key_function_separates_by_header(cache: Cache) {
    let hits = Hits::new();
    let app = app(&cache, &hits);
    let en = fetch_with(&app, "/localized", &[("accept-language", "en")]).await;
    let fr = fetch_with(&app, "/localized", &[("accept-language", "fr")]).await;
    assert!(!fr.is_hit());
    assert_eq!(hits.get(), 2);
    let en_again = fetch_with(&app, "/localized", &[("accept-language", "en")]).await;
    assert!(en_again.is_hit());
    assert_eq!(en_again.body, en.body);
    assert_eq!(hits.get(), 2);
}

both_stores!(
    different_paths_miss,
    different_query_values_miss,
    same_query_in_another_order_is_a_hit,
    separators_in_values_do_not_collide,
    similar_paths_do_not_collide,
    path_key_ignores_the_query,
    query_params_key_keeps_only_the_listed_names,
    custom_key_function_separates_by_header,
);
