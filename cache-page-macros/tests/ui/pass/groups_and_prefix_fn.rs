#![deny(warnings)]

use axum::{Router, http::request::Parts, routing::get};
use cache_page_runtime::{cache_page, keys};

fn tenant_group(parts: &Parts) -> String {
    let tenant = parts.headers.get("x-tenant").and_then(|v| v.to_str().ok());
    format!("tenant:{}", tenant.unwrap_or("none"))
}

fn language_prefix(parts: &Parts) -> String {
    parts.uri.path().split('/').nth(1).unwrap_or("").to_owned()
}

#[cache_page(
    timeout = 60,
    group = "views",
    group = tenant_group,
    group = |parts: &Parts| parts.uri.path().to_owned(),
    group = "products",
    prefix = language_prefix,
    key = keys::default_key,
)]
async fn handler() -> &'static str {
    "hello"
}

#[cache_page(timeout = 60, prefix = |_: &Parts| String::from("v2"), key = |p: &Parts| p.uri.to_string())]
async fn closures() -> &'static str {
    "hello"
}

fn main() {
    let _app: Router = Router::new()
        .route("/", get(handler))
        .route("/c", get(closures));
}
