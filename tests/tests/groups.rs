//! Group invalidation: one call makes every page of a group stale, and no other.

use axum::{
    Extension, Router,
    extract::State,
    http::{HeaderMap, Uri, request::Parts},
    routing::get,
};
use cache_page_runtime::{Cache, cache_page};
use cache_page_tests::{Hits, both_stores, fetch, fetch_with};

#[cache_page(timeout = 60, group = "products")]
async fn product(State(hits): State<Hits>, uri: Uri) -> String {
    format!("{uri} run {}", hits.bump())
}

#[cache_page(timeout = 60, group = "users")]
async fn user(State(hits): State<Hits>, uri: Uri) -> String {
    format!("{uri} run {}", hits.bump())
}

#[cache_page(timeout = 60)]
async fn ungrouped(State(hits): State<Hits>, uri: Uri) -> String {
    format!("{uri} run {}", hits.bump())
}

fn tenant_group(parts: &Parts) -> String {
    let tenant = parts
        .headers
        .get("x-tenant")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("none");
    format!("tenant:{tenant}")
}

#[cache_page(timeout = 60, group = tenant_group)]
async fn dashboard(State(hits): State<Hits>, headers: HeaderMap) -> String {
    let tenant = headers
        .get("x-tenant")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("none");
    format!("dashboard of {tenant} run {}", hits.bump())
}

#[cache_page(timeout = 60, group = "catalogue", group = "prices")]
async fn priced_catalogue(State(hits): State<Hits>, uri: Uri) -> String {
    format!("{uri} run {}", hits.bump())
}

#[cache_page(timeout = 60, group = "catalogue")]
async fn catalogue(State(hits): State<Hits>, uri: Uri) -> String {
    format!("{uri} run {}", hits.bump())
}

#[cache_page(timeout = 60, group = "prices")]
async fn prices(State(hits): State<Hits>, uri: Uri) -> String {
    format!("{uri} run {}", hits.bump())
}

fn app(cache: &Cache, hits: &Hits) -> Router {
    Router::new()
        .route("/products/{id}", get(product))
        .route("/users/{id}", get(user))
        .route("/about", get(ungrouped))
        .route("/dashboard", get(dashboard))
        .route("/priced-catalogue", get(priced_catalogue))
        .route("/catalogue", get(catalogue))
        .route("/prices", get(prices))
        .with_state(hits.clone())
        .layer(Extension(cache.clone()))
}

/// Requests each URI twice so that it is cached, and checks that it is.
async fn warm(app: &Router, uris: &[&str]) {
    for uri in uris {
        fetch(app, uri).await;
        assert!(fetch(app, uri).await.is_hit(), "{uri} was not cached");
    }
}

/// Checks which URIs are served from the cache.
async fn assert_cached(app: &Router, uris: &[&str], cached: bool) {
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

async fn invalidating_a_group_invalidates_all_its_pages_and_no_other(cache: Cache) {
    let hits = Hits::new();
    let app = app(&cache, &hits);
    let products = ["/products/1", "/products/2", "/products/3?color=red"];
    let others = ["/users/1", "/about"];
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
    // The fresh pages are cached again.
    assert_cached(&app, &products, true).await;
    assert_eq!(hits.get(), before + products.len());
}

async fn invalidating_twice_and_unknown_groups(cache: Cache) {
    let hits = Hits::new();
    let app = app(&cache, &hits);
    warm(&app, &["/products/1", "/about"]).await;
    cache
        .invalidate_group("no-page-has-this-group")
        .await
        .expect("invalidated");
    assert_cached(&app, &["/products/1", "/about"], true).await;

    cache
        .invalidate_group("products")
        .await
        .expect("invalidated");
    cache
        .invalidate_group("products")
        .await
        .expect("invalidated twice");
    assert_cached(&app, &["/products/1"], false).await;
    assert_cached(&app, &["/products/1", "/about"], true).await;
}

async fn dynamic_groups_invalidate_one_tenant(cache: Cache) {
    let hits = Hits::new();
    let app = app(&cache, &hits);
    let a = [("x-tenant", "a")];
    let b = [("x-tenant", "b")];

    let page_a = fetch_with(&app, "/dashboard", &a).await;
    let page_b = fetch_with(&app, "/dashboard", &b).await;
    assert_eq!(page_a.text(), "dashboard of a run 1");
    assert_eq!(
        page_b.text(),
        "dashboard of b run 2",
        "tenants must not share a page"
    );
    assert!(fetch_with(&app, "/dashboard", &a).await.is_hit());
    assert!(fetch_with(&app, "/dashboard", &b).await.is_hit());

    cache
        .invalidate_group("tenant:a")
        .await
        .expect("invalidated");

    let b_again = fetch_with(&app, "/dashboard", &b).await;
    assert!(
        b_again.is_hit(),
        "invalidating tenant a invalidated tenant b"
    );
    assert_eq!(b_again.body, page_b.body);
    let a_again = fetch_with(&app, "/dashboard", &a).await;
    assert!(
        !a_again.is_hit(),
        "tenant a's page survived its invalidation"
    );
    assert_eq!(a_again.text(), "dashboard of a run 3");
    assert_eq!(hits.get(), 3);
}

async fn a_page_in_several_groups_is_invalidated_by_each(cache: Cache) {
    let hits = Hits::new();
    let app = app(&cache, &hits);
    let all = ["/priced-catalogue", "/catalogue", "/prices"];
    warm(&app, &all).await;

    cache.invalidate_group("prices").await.expect("invalidated");
    assert_cached(&app, &["/catalogue"], true).await;
    assert_cached(&app, &["/priced-catalogue", "/prices"], false).await;
    assert_cached(&app, &all, true).await;

    cache
        .invalidate_group("catalogue")
        .await
        .expect("invalidated");
    assert_cached(&app, &["/prices"], true).await;
    assert_cached(&app, &["/priced-catalogue", "/catalogue"], false).await;
    assert_cached(&app, &all, true).await;
}

both_stores!(
    invalidating_a_group_invalidates_all_its_pages_and_no_other,
    invalidating_twice_and_unknown_groups,
    dynamic_groups_invalidate_one_tenant,
    a_page_in_several_groups_is_invalidated_by_each,
);
