#![deny(warnings)]

use axum::{Router, extract::Query, routing::get};
use cache_page_runtime::{cache_page, keys};
use serde::Deserialize;

#[derive(Deserialize)]
struct Page {
    page: Option<u32>,
}

#[cache_page(timeout = 600, key = keys::query_params(&["page"]), group = "catalogue", store = "default")]
async fn list(Query(p): Query<Page>) -> String {
    format!("page {}", p.page.unwrap_or(1))
}

fn main() {
    let _app: Router = Router::new().route("/", get(list));
}
