#![deny(warnings)]

use axum::{
    Router,
    http::{StatusCode, request::Parts},
    response::IntoResponse,
    routing::get,
};
use cache_page_runtime::cache_page;

fn no_preview(parts: &Parts) -> bool {
    !parts.headers.contains_key("x-preview")
}

fn tenant(parts: &Parts) -> String {
    parts.uri.path().to_owned()
}

#[cache_page(
    timeout = 60,
    statuses = [200, 203, 301, 404],
    only_if = no_preview,
    authorized = true,
    tag = "products",
    tag = tenant,
    grace = 30,
)]
async fn handler() -> impl IntoResponse {
    (StatusCode::NOT_FOUND, "missing")
}

#[cache_page(timeout = 60, only_if = |parts: &Parts| parts.uri.query().is_none(), grace = 0)]
async fn closure_predicate() -> &'static str {
    "hello"
}

fn main() {
    let _app: Router = Router::new()
        .route("/", get(handler))
        .route("/c", get(closure_predicate));
}
