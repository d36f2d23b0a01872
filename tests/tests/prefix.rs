//! A prefix separates the pages of handlers that share a key.

use axum::{Extension, Router, extract::State, http::request::Parts, routing::get};
use cache_page_runtime::{Cache, cache_page, keys};
use cache_page_tests::{Hits, both_stores, fetch, fetch_with};

#[cache_page(timeout = 60, key = keys::path_key, prefix = "a")]
async fn prefixed_a(State(hits): State<Hits>) -> String {
    hits.bump();
    "page of handler A".to_owned()
}

#[cache_page(timeout = 60, key = keys::path_key, prefix = "b")]
async fn prefixed_b(State(hits): State<Hits>) -> String {
    hits.bump();
    "page of handler B".to_owned()
}

#[cache_page(timeout = 60, key = keys::path_key)]
async fn unprefixed_c(State(hits): State<Hits>) -> String {
    hits.bump();
    "page of handler C".to_owned()
}

#[cache_page(timeout = 60, key = keys::path_key)]
async fn unprefixed_d(State(hits): State<Hits>) -> String {
    hits.bump();
    "page of handler D".to_owned()
}

fn site(parts: &Parts) -> String {
    parts
        .headers
        .get("x-site")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("none")
        .to_owned()
}

#[cache_page(timeout = 60, key = keys::path_key, prefix = site)]
async fn per_site(State(hits): State<Hits>) -> String {
    format!("run {}", hits.bump())
}

/// One router per handler, each on the same path, all on `cache`.
fn router(cache: &Cache, hits: &Hits, handler: axum::routing::MethodRouter<Hits>) -> Router {
    Router::new()
        .route("/page", handler)
        .with_state(hits.clone())
        .layer(Extension(cache.clone()))
}

async fn prefixes_separate_handlers_with_the_same_key(cache: Cache) {
    let hits = Hits::new();
    let a = router(&cache, &hits, get(prefixed_a));
    let b = router(&cache, &hits, get(prefixed_b));

    assert_eq!(fetch(&a, "/page").await.text(), "page of handler A");
    let from_b = fetch(&b, "/page").await;
    assert_eq!(
        from_b.text(),
        "page of handler B",
        "handler B was served handler A's page"
    );
    assert!(!from_b.is_hit());
    assert_eq!(hits.get(), 2);

    let a_again = fetch(&a, "/page").await;
    let b_again = fetch(&b, "/page").await;
    assert!(
        a_again.is_hit() && b_again.is_hit(),
        "each handler's page is cached"
    );
    assert_eq!(a_again.text(), "page of handler A");
    assert_eq!(b_again.text(), "page of handler B");
    assert_eq!(hits.get(), 2);
}

/// The control for the test above: without a prefix, the key alone names the page, so
/// the two handlers do share it (which is what prefixes are for).
async fn without_prefix_the_key_alone_names_the_page(cache: Cache) {
    let hits = Hits::new();
    let c = router(&cache, &hits, get(unprefixed_c));
    let d = router(&cache, &hits, get(unprefixed_d));
    assert_eq!(fetch(&c, "/page").await.text(), "page of handler C");
    let from_d = fetch(&d, "/page").await;
    assert!(from_d.is_hit());
    assert_eq!(from_d.text(), "page of handler C");
    assert_eq!(hits.get(), 1);
}

async fn prefix_function_separates_by_request(cache: Cache) {
    let hits = Hits::new();
    let app = router(&cache, &hits, get(per_site));
    let one = fetch_with(&app, "/page", &[("x-site", "one")]).await;
    let two = fetch_with(&app, "/page", &[("x-site", "two")]).await;
    assert!(!two.is_hit(), "site two got site one's page");
    assert_eq!(hits.get(), 2);
    let one_again = fetch_with(&app, "/page", &[("x-site", "one")]).await;
    assert!(one_again.is_hit());
    assert_eq!(one_again.body, one.body);
    assert_eq!(hits.get(), 2);
}

both_stores!(
    prefixes_separate_handlers_with_the_same_key,
    without_prefix_the_key_alone_names_the_page,
    prefix_function_separates_by_request,
);
