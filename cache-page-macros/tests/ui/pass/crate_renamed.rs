#![deny(warnings)]

// The runtime under another name, as `renamed = { package = "cache-page-runtime" }`
// in Cargo.toml would give it.
extern crate cache_page_runtime as renamed;

use axum::{Router, routing::get};

#[renamed::cache_page(timeout = 60, key = renamed::keys::path_key, crate = "renamed")]
async fn handler() -> &'static str {
    "hello"
}

#[renamed::cache_page(timeout = 60, crate = "::renamed")]
async fn absolute() -> &'static str {
    "hello"
}

fn main() {
    let _app: Router = Router::new()
        .route("/", get(handler))
        .route("/a", get(absolute));
}
