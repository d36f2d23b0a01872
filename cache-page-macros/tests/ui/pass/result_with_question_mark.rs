#![deny(warnings)]

use axum::{Router, extract::Path, http::StatusCode, routing::get};
use cache_page_runtime::cache_page;

fn parse(raw: &str) -> Result<u32, StatusCode> {
    raw.parse().map_err(|_| StatusCode::BAD_REQUEST)
}

#[cache_page(timeout = 60)]
async fn handler(Path(raw): Path<String>) -> Result<String, StatusCode> {
    let n = parse(&raw)?;
    if n == 0 {
        return Err(StatusCode::NOT_FOUND);
    }
    Ok(format!("{n}"))
}

fn main() {
    let _app: Router = Router::new().route("/{raw}", get(handler));
}
