//! The `#[cache_page]` attribute of [cache-page-runtime]. Use it through that crate,
//! which re-exports it: this crate only rewrites a handler into one call to the
//! runtime, where all the caching logic lives.
//!
//! [cache-page-runtime]: https://docs.rs/cache-page-runtime

use proc_macro::TokenStream;

mod args;
mod expand;

/// Caches the responses of an axum handler.
///
/// # What the function becomes
///
/// It keeps its name, visibility, attributes, generics and extractors, and the
/// extractors still run on every request, hit or miss; but it is rewritten into a
/// different function, meant to be given to a router (`get(handler)`), not called:
///
/// - its last parameter (or, with none, a new one) is wrapped in a hidden extractor,
///   `__private::WithCache<T>`, which hands the request head to the cache after every
///   other extractor has run (and any `DoNotCache` extension they set);
/// - it returns `axum::response::Response` instead of its declared type;
/// - its body runs only on a miss, inside the runtime's cache lookup.
///
/// So `handler().await` no longer compiles (the error names `WithCache`): the
/// function is an axum handler, and axum supplies its arguments.
///
/// ```compile_fail
/// # use cache_page_runtime::cache_page;
/// #[cache_page(timeout = 60)]
/// async fn home() -> String {
///     "hello".to_owned()
/// }
///
/// # async fn f() {
/// let page = home().await; // error: `home` takes a `WithCache<()>`
/// # }
/// ```
///
/// # Testing a cached handler
///
/// Send it requests through a `Router`, with tower's `ServiceExt::oneshot`, and
/// look at the responses (a `Cache-Status` header says whether one was a hit); give
/// the router its own cache as an `Extension` so that tests do not share one. Or keep
/// the logic in an uncached function that the cached handler calls, and test that
/// function directly.
///
/// ```
/// use axum::{Extension, Router, body::Body, http::Request, routing::get};
/// use cache_page_runtime::{Cache, cache_page};
/// use tower::ServiceExt as _;
///
/// /// The logic, uncached: a plain function, called directly in tests.
/// fn render(name: &str) -> String {
///     format!("<h1>Hello, {name}</h1>")
/// }
///
/// #[cache_page(timeout = 60)]
/// async fn home() -> String {
///     render("world")
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// assert_eq!(render("world"), "<h1>Hello, world</h1>");
///
/// let app = Router::new()
///     .route("/", get(home))
///     .layer(Extension(Cache::memory()));
/// for expected in ["fwd=uri-miss; stored", "hit"] {
///     let request = Request::get("http://localhost/").body(Body::empty()).unwrap();
///     let response = app.clone().oneshot(request).await.unwrap();
///     assert_eq!(response.status(), 200);
///     let status = response.headers()["cache-status"].to_str().unwrap();
///     assert!(status.contains(expected), "{status}");
/// }
/// # }
/// ```
///
/// # Arguments
///
/// `timeout` is required; the others are `key`, `group`, `prefix`, `store`,
/// `statuses`, `only_if`, `authorized`, `tag`, `grace` and `crate`. Their values and
/// defaults are in the table of `cache_page_runtime::cache_page` (the attribute as
/// re-exported by the runtime, the way to use it). An unknown or repeated argument, or
/// a value of the wrong kind, is a compile error at that token; so is the attribute on
/// anything but an `async fn` without `self`.
#[proc_macro_attribute]
pub fn cache_page(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::cache_page(args.into(), item.into()).into()
}
