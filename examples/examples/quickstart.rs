//! The quickstart: two cached pages on the in-process store, and an endpoint that
//! invalidates their group. No Redis needed.
//!
//! ```sh
//! cargo run -p examples --example quickstart
//! curl -i http://127.0.0.1:3000/            # miss, then hit (see `cache-status` and `age`)
//! curl -i http://127.0.0.1:3000/hello/ada
//! curl -X POST http://127.0.0.1:3000/invalidate   # every page of the group is fresh again
//! ```

use std::time::{SystemTime, UNIX_EPOCH};

use axum::{
    Router,
    extract::Path,
    http::StatusCode,
    routing::{get, post},
};
use cache_page_runtime::{cache_page, keys::path_key};

fn now() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis())
}

/// Cached for a minute, in the group `pages`.
#[cache_page(timeout = 60, group = "pages")]
async fn home() -> String {
    format!("home page rendered at {} ms\n", now())
}

/// One cached page per name (the key is the path alone).
#[cache_page(timeout = 60, key = path_key, group = "pages")]
async fn hello(Path(name): Path<String>) -> String {
    format!("hello {name}, rendered at {} ms\n", now())
}

/// Business logic that changed what the pages show invalidates their group.
async fn invalidate() -> Result<&'static str, StatusCode> {
    cache_page_runtime::invalidate_group("pages")
        .await
        .map_err(|_| StatusCode::SERVICE_UNAVAILABLE)?;
    Ok("group `pages` invalidated\n")
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    examples::init_logging();
    let app = Router::new()
        .route("/", get(home))
        .route("/hello/{name}", get(hello))
        .route("/invalidate", post(invalidate));
    let (listener, addr) = examples::listen(3000).await?;
    println!("cache-page quickstart on http://{addr}/ (in-process store)");
    println!("  curl -i http://{addr}/              twice: a miss, then a hit");
    println!("  curl -i http://{addr}/hello/ada");
    println!("  curl -X POST http://{addr}/invalidate");
    axum::serve(listener, app).await
}
