//! `CachePageLayer`: caches a route like the attribute does, and shares its entries
//! with the attribute: the same request and options give the same key.

use axum::{
    Extension, Router,
    extract::{Request, State},
    middleware::{self, Next},
    response::Response,
    routing::get,
};
use cache_page_runtime::{Cache, CachePageLayer, DoNotCache, PageConfig, cache_page, keys};
use cache_page_tests::{Hits, both_stores, fetch, fetch_with};

fn config() -> PageConfig {
    PageConfig::new(60u64)
        .key(keys::path_key)
        .prefix("p")
        .group("g")
}

#[cache_page(timeout = 60, key = keys::path_key, prefix = "p", group = "g")]
async fn by_attribute(State(hits): State<Hits>) -> String {
    format!("from the attribute, run {}", hits.bump())
}

async fn plain(State(hits): State<Hits>) -> String {
    format!("from the layer, run {}", hits.bump())
}

async fn bypass_on_header(mut req: Request, next: Next) -> Response {
    if req.headers().contains_key("x-bypass") {
        req.extensions_mut().insert(DoNotCache);
    }
    next.run(req).await
}

/// Routes cached by the attribute.
fn attribute_app(cache: &Cache, hits: &Hits) -> Router {
    Router::new()
        .route("/shared", get(by_attribute))
        .route("/other", get(by_attribute))
        .with_state(hits.clone())
        .layer(Extension(cache.clone()))
}

/// The same paths, cached by a layer with the same options around a plain handler.
fn layer_app(cache: &Cache, hits: &Hits) -> Router {
    Router::new()
        .route("/shared", get(plain))
        .route("/layered", get(plain))
        .route("/other", get(plain))
        .route_layer(CachePageLayer::new(config()))
        .with_state(hits.clone())
        .layer(middleware::from_fn(bypass_on_header))
        .layer(Extension(cache.clone()))
}

async fn the_layer_caches_a_route(cache: Cache) {
    let hits = Hits::new();
    let app = layer_app(&cache, &hits);
    let miss = fetch(&app, "/layered").await;
    assert_eq!(miss.text(), "from the layer, run 1");
    assert_eq!(
        miss.cache_status(),
        "cache-page; fwd=uri-miss; stored; ttl=60"
    );
    // path_key: the query string does not make another page.
    let hit = fetch(&app, "/layered?page=2").await;
    assert!(hit.is_hit(), "{:?}", hit.cache_status());
    assert_eq!(hit.text(), "from the layer, run 1");
    assert_eq!(hits.get(), 1);
    // Middleware outside the layer can still bypass it.
    let bypassed = fetch_with(&app, "/layered", &[("x-bypass", "1")]).await;
    assert_eq!(bypassed.cache_status(), "cache-page; fwd=bypass");
    assert_eq!(bypassed.text(), "from the layer, run 2");
    assert!(fetch(&app, "/layered").await.is_hit());
}

async fn attribute_and_layer_share_entries(cache: Cache) {
    let attribute_hits = Hits::new();
    let layer_hits = Hits::new();
    let by_attribute = attribute_app(&cache, &attribute_hits);
    let by_layer = layer_app(&cache, &layer_hits);

    let stored = fetch(&by_attribute, "/shared").await;
    assert_eq!(stored.text(), "from the attribute, run 1");
    let through_layer = fetch(&by_layer, "/shared").await;
    assert!(
        through_layer.is_hit(),
        "the layer computed another key: {:?}",
        through_layer.cache_status()
    );
    assert_eq!(through_layer.text(), "from the attribute, run 1");
    assert_eq!(layer_hits.get(), 0, "the layer's handler ran");

    // And the other way round.
    let stored = fetch(&by_layer, "/other").await;
    assert_eq!(stored.text(), "from the layer, run 1");
    let through_attribute = fetch(&by_attribute, "/other").await;
    assert!(
        through_attribute.is_hit(),
        "{:?}",
        through_attribute.cache_status()
    );
    assert_eq!(through_attribute.text(), "from the layer, run 1");
    assert_eq!(attribute_hits.get(), 1);
}

async fn a_group_invalidates_pages_of_both(cache: Cache) {
    let attribute_hits = Hits::new();
    let layer_hits = Hits::new();
    let by_attribute = attribute_app(&cache, &attribute_hits);
    let by_layer = layer_app(&cache, &layer_hits);
    fetch(&by_attribute, "/shared").await;
    fetch(&by_layer, "/layered").await;
    assert!(fetch(&by_layer, "/shared").await.is_hit());
    assert!(fetch(&by_layer, "/layered").await.is_hit());

    cache.invalidate_group("g").await.expect("invalidated");

    let shared = fetch(&by_attribute, "/shared").await;
    assert!(!shared.is_hit(), "the attribute's page survived its group");
    assert_eq!(shared.text(), "from the attribute, run 2");
    let layered = fetch(&by_layer, "/layered").await;
    assert!(!layered.is_hit(), "the layer's page survived its group");
    assert_eq!(layered.text(), "from the layer, run 2");
    assert!(fetch(&by_layer, "/shared").await.is_hit());
    assert!(fetch(&by_layer, "/layered").await.is_hit());
}

both_stores!(
    the_layer_caches_a_route,
    attribute_and_layer_share_entries,
    a_group_invalidates_pages_of_both,
);
