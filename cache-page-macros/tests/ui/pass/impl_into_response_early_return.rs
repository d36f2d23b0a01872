#![deny(warnings)]

use axum::{
    Router,
    extract::Path,
    http::StatusCode,
    response::{IntoResponse, Redirect},
    routing::get,
};
use cache_page_runtime::cache_page;

#[cache_page(timeout = 60)]
async fn handler(Path(id): Path<u32>) -> impl IntoResponse {
    if id == 0 {
        return (StatusCode::NOT_FOUND, "none").into_response();
    }
    if id == 1 {
        return Redirect::to("/2").into_response();
    }
    format!("item {id}").into_response()
}

#[cache_page(timeout = 60)]
async fn nested(Path(id): Path<u32>) -> Result<impl IntoResponse, (StatusCode, impl IntoResponse)> {
    if id == 0 {
        return Err((StatusCode::NOT_FOUND, "none"));
    }
    Ok(format!("item {id}"))
}

fn main() {
    let _app: Router = Router::new()
        .route("/{id}", get(handler))
        .route("/n/{id}", get(nested));
}
