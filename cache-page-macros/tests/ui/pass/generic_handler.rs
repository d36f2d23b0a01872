#![deny(warnings)]

use axum::{Router, extract::State, routing::get};
use cache_page_runtime::cache_page;

trait Catalogue: Clone + Send + Sync + 'static {
    fn name(&self) -> String;
}

#[derive(Clone)]
struct Shop;

impl Catalogue for Shop {
    fn name(&self) -> String {
        "shop".to_owned()
    }
}

#[cache_page(timeout = 60, group = "catalogue")]
async fn handler<C: Catalogue>(State(catalogue): State<C>) -> String {
    catalogue.name()
}

#[cache_page(timeout = 60)]
async fn with_where<C>(State(catalogue): State<C>) -> String
where
    C: Catalogue,
{
    catalogue.name()
}

fn main() {
    let _app: Router = Router::new()
        .route("/", get(handler::<Shop>))
        .route("/w", get(with_where::<Shop>))
        .with_state(Shop);
}
