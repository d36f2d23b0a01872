#![deny(warnings)]

use axum::{Router, routing::get};
use cache_page_runtime::cache_page;

#[cache_page(timeout = 60)]
async fn handler() -> &'static str {
    "hello"
}

#[cache_page(timeout = 60)]
async fn no_return_type() {}

fn main() {
    let _app: Router = Router::new()
        .route("/", get(handler))
        .route("/unit", get(no_return_type));
}
