//! Whole-response caching for [axum] handlers, on Redis or in process.
//!
//! ```
//! use axum::{Router, routing::get};
//! use cache_page_runtime::{cache_page, keys::path_key};
//!
//! #[cache_page(timeout = 3600, key = path_key, group = "views", prefix = "p")]
//! async fn product_list() -> &'static str {
//!     "<h1>Products</h1>"
//! }
//!
//! # async fn business_logic() -> Result<(), cache_page_runtime::Error> {
//! let app: Router = Router::new().route("/products", get(product_list));
//! // After a product changed, every page of the group is stale, in O(1):
//! cache_page_runtime::invalidate_group("views").await?;
//! # let _ = app; Ok(()) }
//! ```
//!
//! The page is served from the cache until its timeout runs out or its group is
//! invalidated. The handler's own extractors run on every request, hit or miss, so
//! guards and validation written as extractors keep working on cached pages.
//!
//! # Stores
//!
//! With nothing installed, pages are kept in process by a bounded [`MemoryStore`].
//! For a cache shared by every instance of a service, install a [`RedisStore`] at
//! start-up:
//!
//! ```no_run
//! # fn main() -> Result<(), cache_page_runtime::Error> {
//! use cache_page_runtime::{Cache, RedisStore};
//! cache_page_runtime::install(Cache::new(RedisStore::open("redis://127.0.0.1/")?))?;
//! # Ok(()) }
//! ```
//!
//! # What is cached
//!
//! Only `GET` and `HEAD` requests, only `200` responses, never a response that sets a
//! cookie or says `Cache-Control: private`, `no-store` or `no-cache`, never one with
//! `Vary: *`, never a body of unknown length or over the cache's limit. A request with
//! the [`DoNotCache`] extension bypasses the cache; one with [`RefreshCache`] runs the
//! handler and replaces the entry. When the store fails or is slow, pages are served
//! uncached: the cache never turns into a failed request.
//!
//! # Features
//!
//! - `macros` (default): the [`cache_page`] attribute.
//! - `redis` (default): [`RedisStore`], and the [`redis`] crate re-exported.
#![cfg_attr(docsrs, feature(doc_cfg))]
#![warn(missing_docs)]

mod breaker;
mod cache;
mod config;
mod entry;
mod error;
mod flight;
mod key;
mod layer;
mod memory;
mod policy;
#[cfg(feature = "cluster")]
mod redis_cluster;
#[cfg(feature = "redis")]
mod redis_store;
mod request;
mod serve;
mod store;
mod telemetry;

pub use crate::{
    cache::{
        Cache, CacheBuilder, default_cache, install, install_named, invalidate_group,
        invalidate_path, invalidate_tag, invalidate_url, named_cache,
    },
    config::{IntoTimeout, PageConfig},
    entry::{Entry, VaryIndex},
    error::Error,
    key::{KeyFn, hash_key, key_preimage},
    layer::{CachePage, CachePageLayer},
    memory::{MemoryStore, MemoryStoreBuilder},
    request::{DoNotCache, RefreshCache},
    store::{BoxFuture, Lookup, PageKey, Store, Version, version_seed},
};

#[cfg(feature = "cluster")]
#[cfg_attr(docsrs, doc(cfg(feature = "cluster")))]
pub use crate::redis_cluster::{RedisClusterStore, RedisClusterStoreBuilder};
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use crate::redis_store::{RedisStore, RedisStoreBuilder};

/// The key functions that ship with the crate; a key function is any
/// `Fn(&Parts) -> String`.
pub mod keys {
    pub use crate::key::{KeyFn, default_key, path_key, query_key, query_params};
}

/// The `#[cache_page(...)]` attribute: caches an axum handler's responses.
///
/// ```
/// use axum::extract::Query;
/// use cache_page_runtime::{cache_page, keys};
///
/// #[derive(serde::Deserialize)]
/// struct Page { page: Option<u32> }
///
/// #[cache_page(timeout = 600, key = keys::query_params(&["page"]), group = "catalogue")]
/// async fn list(Query(p): Query<Page>) -> String {
///     format!("page {}", p.page.unwrap_or(1))
/// }
/// # let _ = list;
/// ```
///
/// Arguments:
///
/// | argument  | value | |
/// |-----------|-------|---|
/// | `timeout` | seconds, or a function of the response's parts returning seconds | required |
/// | `key`     | a key function, `Fn(&Parts) -> String` | default [`keys::default_key`] |
/// | `group`   | `"name"`, or a function of the request's parts; may repeat | none |
/// | `prefix`  | `"text"`, or a function of the request's parts | `""` |
/// | `store`   | `"name"` of a cache given to [`install_named`] | the default cache |
/// | `statuses`| `[200, 404, …]`: the statuses stored (never 304) | `[200]` |
/// | `only_if` | a function of the request's parts returning `bool`; `false` bypasses the cache | always |
/// | `authorized` | `true`: cache requests with `Authorization`, one page per caller | `false`: they bypass |
/// | `tag`     | `"name"`, or a function of the request's parts; may repeat ([`Cache::invalidate_tag`]) | none |
/// | `grace`   | seconds a stale page is still served while one request refreshes it | `0` |
/// | `crate`   | `"path"` to this crate if it was renamed | `::cache_page_runtime` |
#[cfg(feature = "macros")]
#[cfg_attr(docsrs, doc(cfg(feature = "macros")))]
pub use cache_page_macros::cache_page;

pub use axum;
pub use http;
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use redis;

/// Not public API: what code generated by `#[cache_page]` calls. It may change in any
/// release.
#[doc(hidden)]
pub mod __private {
    pub use crate::{
        config::PageConfig,
        request::{CacheRequest, ViaCache, WithCache},
        serve::serve,
    };
    pub use axum::response::Response;
    pub use std::sync::LazyLock;
}
