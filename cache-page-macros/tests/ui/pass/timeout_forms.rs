#![deny(warnings)]

use axum::{
    Router,
    http::{StatusCode, response::Parts},
    routing::get,
};
use cache_page_runtime::cache_page;

const HOUR: u64 = 3600;
const GRACE: u64 = 30;

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

// `grace` takes a constant too, or any expression of type `u64`.
#[cache_page(timeout = HOUR, grace = GRACE)]
async fn constant_grace() -> &'static str {
    "constant grace"
}

#[cache_page(timeout = HOUR, grace = 60 * 5)]
async fn product_grace() -> &'static str {
    "product grace"
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
        .route("/s", get(suffixed))
        .route("/cg", get(constant_grace))
        .route("/pg", get(product_grace));
}
