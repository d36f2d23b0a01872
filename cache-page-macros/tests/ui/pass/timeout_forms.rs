#![deny(warnings)]

use axum::{
    Router,
    http::{StatusCode, response::Parts},
    routing::get,
};
use cache_page_runtime::cache_page;

const HOUR: u64 = 3600;

fn by_status(res: &Parts) -> u64 {
    if res.status == StatusCode::NOT_FOUND {
        60
    } else {
        3600
    }
}

#[cache_page(timeout = by_status)]
async fn function() -> &'static str {
    "fn"
}

#[cache_page(timeout = 60 * 15)]
async fn product() -> &'static str {
    "product"
}

#[cache_page(timeout = HOUR)]
async fn constant() -> &'static str {
    "constant"
}

#[cache_page(timeout = 30u32)]
async fn suffixed() -> &'static str {
    "suffixed"
}

fn main() {
    let _app: Router = Router::new()
        .route("/f", get(function))
        .route("/p", get(product))
        .route("/c", get(constant))
        .route("/s", get(suffixed));
}
