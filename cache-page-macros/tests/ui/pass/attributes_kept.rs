#![deny(warnings)]
#![deny(missing_docs)]
//! A documented crate: the generated code must not need docs of its own.

use axum::{Router, routing::get};
use cache_page_runtime::cache_page;

mod pages {
    use super::cache_page;

    /// The home page.
    ///
    /// Documented, visible in the crate, with a lint allowed on it.
    #[cache_page(timeout = 60, group = "pages")]
    #[allow(clippy::needless_return, non_snake_case)]
    pub(crate) async fn Home() -> String {
        return String::from("home");
    }

    /// A page with an attribute on an argument.
    #[cache_page(timeout = 60)]
    pub(crate) async fn about(#[allow(unused_mut)] mut body: String) -> String {
        body.push('!');
        body
    }

    /// A page with an inner attribute in its body.
    #[cache_page(timeout = 60)]
    pub(crate) async fn contact() -> &'static str {
        #![allow(unused_variables)]
        let unused = 1;
        "contact"
    }
}

fn main() {
    let _app: Router = Router::new()
        .route("/", get(pages::Home))
        .route("/about", get(pages::about))
        .route("/contact", get(pages::contact));
}
