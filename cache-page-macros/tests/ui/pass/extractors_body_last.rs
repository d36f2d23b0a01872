#![deny(warnings)]

use std::collections::HashMap;

use axum::{
    Extension, Json, Router,
    extract::{Path, Query, State},
    http::HeaderMap,
    routing::{get, post},
};
use cache_page_runtime::{cache_page, keys::path_key};
use serde::{Deserialize, Serialize};

#[derive(Clone)]
struct Db;

#[derive(Clone)]
struct Tenant(&'static str);

#[derive(Deserialize)]
struct Page {
    page: Option<u32>,
}

#[derive(Deserialize, Serialize)]
struct Item {
    name: String,
}

#[cache_page(timeout = 3600, key = path_key, group = "views", prefix = "p")]
async fn with_string_body(
    State(_db): State<Db>,
    Path(id): Path<u32>,
    Query(q): Query<Page>,
    headers: HeaderMap,
    Extension(tenant): Extension<Tenant>,
    body: String,
) -> String {
    format!("{id} {:?} {} {} {body}", q.page, headers.len(), tenant.0)
}

#[cache_page(timeout = 60)]
async fn with_json_body(
    State(_db): State<Db>,
    Path(params): Path<HashMap<String, String>>,
    Json(mut item): Json<Item>,
) -> Json<Item> {
    item.name.push_str(&params.len().to_string());
    Json(item)
}

#[cache_page(timeout = 60)]
async fn only_query(Query(q): Query<Page>) -> String {
    format!("{:?}", q.page)
}

fn main() {
    let _app: Router = Router::new()
        .route("/a/{id}", post(with_string_body))
        .route("/b/{id}", post(with_json_body))
        .route("/c", get(only_query))
        .layer(Extension(Tenant("t")))
        .with_state(Db);
}
