//! The same pages on Redis, shared by every instance of the service.
//!
//! ```sh
//! REDIS_URL=redis://127.0.0.1:6379 cargo run -p examples --example redis
//! curl -i http://127.0.0.1:3001/products?page=2
//! redis-cli --scan --pattern 'cache-page:*'        # the entries and the group version
//! curl -X POST http://127.0.0.1:3001/admin/invalidate/products
//! ```
//!
//! Stop Redis while it runs: pages are still served, uncached, and caching resumes by
//! itself when Redis is back.

use std::time::{SystemTime, UNIX_EPOCH};

use axum::{
    Router,
    extract::{Path, Query},
    http::StatusCode,
    routing::{get, post},
};
use cache_page_runtime::{Cache, cache_page, keys};
use serde::Deserialize;

fn now() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis())
}

#[derive(Deserialize)]
struct Listing {
    page: Option<u32>,
}

/// One page per `?page=`; other query parameters (tracking tags) do not split it.
#[cache_page(timeout = 300, key = keys::query_params(&["page"]), group = "products")]
async fn products(Query(q): Query<Listing>) -> String {
    format!(
        "products, page {}, rendered at {} ms\n",
        q.page.unwrap_or(1),
        now()
    )
}

#[cache_page(timeout = 300, key = keys::path_key, group = "products")]
async fn product(Path(id): Path<u32>) -> String {
    format!("product {id}, rendered at {} ms\n", now())
}

/// Invalidates a group: one Redis command, however many pages it has.
async fn invalidate(Path(group): Path<String>) -> Result<String, StatusCode> {
    cache_page_runtime::invalidate_group(&group)
        .await
        .map_err(|err| {
            tracing::error!(error = %err, "invalidation failed");
            StatusCode::SERVICE_UNAVAILABLE
        })?;
    Ok(format!("group `{group}` invalidated\n"))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    examples::init_logging();
    // REDIS_URL (default redis://127.0.0.1:6379) and the other CACHE_PAGE_* variables.
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    let cache = Cache::from_vars(|name| match name {
        "REDIS_URL" => Some(url.clone()),
        other => std::env::var(other).ok(),
    })?;
    cache_page_runtime::install(cache)?;

    let app = Router::new()
        .route("/products", get(products))
        .route("/products/{id}", get(product))
        .route("/admin/invalidate/{group}", post(invalidate));
    let (listener, addr) = examples::listen(3001).await?;
    println!("cache-page on Redis at {url}; serving http://{addr}/products");
    println!("  curl -i 'http://{addr}/products?page=2'");
    println!("  curl -X POST http://{addr}/admin/invalidate/products");
    axum::serve(listener, app).await?;
    Ok(())
}
