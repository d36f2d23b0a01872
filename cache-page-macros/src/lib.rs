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
/// The handler stays a handler: same name, visibility, attributes, generics and
/// extractors, and the extractors still run on every request, hit or miss. Its last
/// extractor is wrapped so that the cache sees the request after every other
/// extractor has run (and any `DoNotCache` extension they set); its body runs only on
/// a miss, and its return type becomes `Response`.
///
/// The arguments (`timeout`, required; `key`, `group`, `prefix`, `store`, `crate`) are
/// documented on `cache_page_runtime::cache_page`. An unknown or repeated argument, or
/// a value of the wrong kind, is a compile error at that token; so is the attribute on
/// anything but an `async fn` without `self`.
#[proc_macro_attribute]
pub fn cache_page(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::cache_page(args.into(), item.into()).into()
}
