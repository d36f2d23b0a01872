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
//! The page is served from the cache until its timeout runs out or it is
//! invalidated. The handler's own extractors run on every request, hit or miss, so
//! guards and validation written as extractors keep working on cached pages.
//!
//! # From the first attribute to production
//!
//! ## 1. What is cached
//!
//! `GET` and `HEAD` requests (a `HEAD` is answered from the stored `GET`), and by
//! default only `200` responses (`statuses = [200, 404]` to add others; a `304`, a
//! `206` or a `1xx` is never stored). Never stored: responses with `Set-Cookie`, with
//! `Cache-Control: private`, `no-store` or `no-cache`, with `Vary: *`, bodies of
//! unknown length (streams) or over the cache's limit (8 MiB), which pass through
//! untouched. Stored responses keep their status, every end-to-end header (repeated
//! names too) and the raw body; they get `Cache-Control: max-age` (the smaller of the
//! timeout and the handler's own), `Expires` if absent, and an `ETag` if absent. Hits
//! carry `Age`.
//!
//! ## 2. Keys
//!
//! A page is identified by its prefix, its groups' versions and the output of its key
//! function, hashed with md5 ([`hash_key`]). The key functions in [`keys`]:
//! [`default_key`](keys::default_key) (host, path and every query parameter in a
//! canonical order, as Django does), [`path_key`](keys::path_key),
//! [`query_key`](keys::query_key), and [`query_params`](keys::query_params) to keep
//! only the parameters that matter. Any `Fn(&Parts) -> String` is a key function.
//! When a response has `Vary`, the request's values of those headers are part of the
//! key too (Django's two-level scheme), whatever the order and case of the names.
//!
//! ## 3. Invalidation
//!
//! | what                                    | call                          | cost |
//! |-----------------------------------------|-------------------------------|------|
//! | every page of a group                   | [`Cache::invalidate_group`]   | one command, O(1) |
//! | the same, old pages served stale while rebuilt | [`Cache::invalidate_group_soft`] | one command, O(1) |
//! | a path, any query string, any headers   | [`Cache::invalidate_path`]    | one command, O(1) |
//! | one URL with its query, any headers     | [`Cache::invalidate_url`]     | one command, O(1) |
//! | everything under a prefix               | [`Cache::invalidate_prefix`]  | one command, O(1) |
//! | the page a key function produced        | [`Cache::invalidate_key`], [`Cache::invalidate_request`] | two |
//! | every page with a tag                   | [`Cache::invalidate_tag`]     | linear in the tag's pages |
//!
//! Versioned invalidations (the first five) never scan and never delete: old pages
//! become unreachable and expire on their own timeout, so their memory is freed by
//! TTL. Tags delete their pages at once, freeing memory now, at a cost linear in the
//! number of pages: prefer groups for large sets and frequent invalidations, tags
//! when memory must be freed immediately or the set is small. Every invalidation
//! returns once it is visible to all instances sharing the store.
//!
//! The free functions ([`invalidate_group`], [`invalidate_group_soft`],
//! [`invalidate_path`], [`invalidate_url`], [`invalidate_prefix`], [`invalidate_tag`])
//! act on the default cache, so business logic needs no handle.
//!
//! ## 4. Stores
//!
//! With nothing installed, pages are kept in process by a bounded [`MemoryStore`].
//! For a cache shared by every instance of a service, install a [`RedisStore`] once
//! at start-up, or configure one from the environment ([`Cache::from_env`]):
//!
//! ```no_run
//! # fn main() -> Result<(), cache_page_runtime::Error> {
//! use cache_page_runtime::{Cache, RedisStore};
//! cache_page_runtime::install(Cache::new(RedisStore::open("redis://127.0.0.1/")?))?;
//! # Ok(()) }
//! ```
//!
//! A handler may name another cache (`store = "name"`, see [`install_named`]), and a
//! router may carry its own as a request extension (`Router::layer(Extension(cache))`).
//! With the `cluster` feature, `RedisClusterStore` runs on Redis Cluster with the same
//! keys and behaviour.
//!
//! ## 5. Privacy
//!
//! A shared cache must never serve one user's page to another. Requests carrying
//! `Authorization` bypass the cache unless the handler says `authorized = true`, and
//! then a digest of the credentials is part of the key: each caller has pages of their
//! own. Responses that set cookies or are marked `private` are never stored. A page
//! that depends on a cookie must say `Vary: Cookie` (or use a key function that reads
//! it); a [`DoNotCache`] extension, set by any middleware, bypasses the cache for a
//! request.
//!
//! ## 6. Speed
//!
//! A hit costs one round trip to Redis at most, and no bytes of the page: group and
//! scope versions, and the pages hit, are kept in process, and Redis tells the store
//! when one changes (client-side tracking), before it answers any later command. A hit
//! on a kept page waits for one `PING` sent after it began, shared by all the hits
//! that wait at once, so it never serves what another process invalidated before it
//! began. Concurrent misses of one page run
//! its handler once per process (single flight), and at most once per lock period
//! across instances with [`CacheBuilder::lock_across_instances`]. With `grace =
//! <seconds>`, a page past its timeout is served stale while one request refreshes it
//! in the background (one in all instances, with the lock), and goes on being served
//! if the refresh fails; after [`invalidate_group_soft`], the group's old pages are
//! served the same way for up to `grace` seconds, so invalidating a large group does
//! not send every request to the handlers at once.
//!
//! ## 7. Failures
//!
//! The cache never fails a request. A store that errors or does not answer within the
//! timeout (500 ms; Redis commands 250 ms) is logged and the page is served uncached;
//! after 3 failures in a row a circuit breaker stops calling the store for 2 s
//! ([`Cache::is_available`]). The Redis connection is made lazily and re-made after
//! failures: an application starts while Redis is down and caches once it is up. A
//! damaged or foreign entry reads as a miss and is overwritten. Invalidations, called
//! by business logic, return the [`Error`] instead; after [`Error::Timeout`] their
//! outcome is unknown, and calling them again is safe.
//!
//! ## 8. Sizing Redis
//!
//! Every page key has a TTL (its timeout plus grace). Group and prefix versions have
//! none; a path or URL version lives five minutes, or as long as the longest page
//! stored under it, and a week once invalidated. Set
//! `maxmemory` and `maxmemory-policy allkeys-lru` (or `allkeys-lfu`): evicting a page
//! is a miss, and evicting a version is safe, because a missing version is re-seeded
//! from the clock, above every value it had, so invalidated pages never come back (it
//! costs one miss per page of that group). `volatile-*` policies also work, and never
//! evict versions. Each page costs its body, its headers and about 100 bytes of
//! overhead (see BENCHMARKS.md for measured figures).
//!
//! ## 9. Observability
//!
//! Every cached request runs in a `cache_page` span at `debug`; hits and misses are
//! `trace` events, stores and invalidations `debug`, store failures `warn`, breaker
//! changes `warn`/`info`. With the `metrics` feature, counters and a histogram go
//! through the [`metrics`](https://docs.rs/metrics) facade:
//!
//! | metric                                | kind      | labels |
//! |---------------------------------------|-----------|--------|
//! | `cache_page_requests_total`           | counter   | `outcome`: `hit`, `stale`, `miss`, `collapsed`, `bypass` |
//! | `cache_page_stores_total`             | counter   | |
//! | `cache_page_not_stored_total`         | counter   | `reason` (as in `Cache-Status` `detail`) |
//! | `cache_page_errors_total`             | counter   | `op`: `lookup`, `store`, `invalidate` |
//! | `cache_page_invalidations_total`      | counter   | `kind`: `group`, `path`, `url`, `prefix`, `tag`, `key` |
//! | `cache_page_lookup_duration_seconds`  | histogram | |
//! | `cache_page_circuit_open`             | gauge     | |
//! | `cache_page_lag_waits_total`          | counter   | |
//!
//! Responses carry an RFC 9211 `Cache-Status` header (`cache-page; hit; ttl=42`, a
//! negative `ttl` on a page served stale in its grace, `cache-page; fwd=uri-miss;
//! stored`, `…; fwd=bypass`, `…; detail=set-cookie`), which [`CacheBuilder::cache_status`]
//! renames or turns off. A response that already has one (a handler passing on its
//! upstream caches') keeps it, with the cache's member last: `upstream; hit,
//! cache-page; hit; ttl=42`.
//!
//! ## 10. Whole routers
//!
//! [`CachePageLayer`] applies the same caching to every route below it, with the same
//! keys, stores and invalidation as the attribute.
//!
//! # Features
//!
//! - `macros` (default): the [`cache_page`] attribute.
//! - `redis` (default): [`RedisStore`], and the [`redis`] crate re-exported.
//! - `metrics` (default): counters and histograms through the `metrics` facade.
//! - `cluster`: `RedisClusterStore`, on Redis Cluster.
#![cfg_attr(docsrs, feature(doc_cfg))]
// The docs link to the items of every default feature; a build without one of them
// shows those links as plain text rather than failing its docs.
#![cfg_attr(
    not(all(feature = "macros", feature = "redis")),
    allow(rustdoc::broken_intra_doc_links)
)]
#![warn(missing_docs)]

#[cfg(feature = "redis")]
mod barrier;
mod breaker;
mod cache;
mod config;
mod entry;
mod env;
mod error;
mod flight;
mod key;
mod layer;
mod memory;
mod miss;
mod policy;
#[cfg(feature = "cluster")]
mod redis_cluster;
#[cfg(feature = "redis")]
mod redis_store;
mod replica;
mod request;
mod respond;
mod serve;
mod store;
mod telemetry;
#[cfg(feature = "redis")]
mod tracking;

pub use crate::{
    cache::{
        Cache, CacheBuilder, default_cache, install, install_named, invalidate_group,
        invalidate_group_soft, invalidate_path, invalidate_prefix, invalidate_tag, invalidate_url,
        named_cache,
    },
    config::{IntoTimeout, PageConfig},
    entry::{Entry, VaryIndex},
    env::{VARIABLES as ENV_VARIABLES, redact_url},
    error::Error,
    key::{KeyFn, hash_key, key_preimage},
    layer::{CachePage, CachePageLayer},
    memory::{MemoryStore, MemoryStoreBuilder},
    request::{DoNotCache, RefreshCache},
    store::{BoxFuture, Lookup, PageKey, SOFT_WINDOW, Store, Superseded, Version, version_seed},
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
    pub use crate::key::{KeyFn, canonical_path, default_key, path_key, query_key, query_params};
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
/// | `timeout` | seconds (a number, or a constant or expression), or a function of the response's parts returning seconds | required |
/// | `key`     | a key function, `Fn(&Parts) -> String` | default [`keys::default_key`] |
/// | `group`   | `"name"`, or a function of the request's parts; may repeat | none |
/// | `prefix`  | `"text"`, or a function of the request's parts | `""` |
/// | `store`   | `"name"` of a cache given to [`install_named`] | the default cache |
/// | `statuses`| `[200, 404, …]`: the statuses stored (never 304, 206 or 1xx) | `[200]` |
/// | `only_if` | a function of the request's parts returning `bool`; `false` bypasses the cache | always |
/// | `authorized` | `true`: cache requests with `Authorization`, one page per caller | `false`: they bypass |
/// | `tag`     | `"name"`, or a function of the request's parts; may repeat ([`Cache::invalidate_tag`]) | none |
/// | `grace`   | seconds (a number, or a `u64` constant or expression) a stale page is still served while one request refreshes it | `0` |
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
        request::{CacheRequest, ViaCacheParts, ViaCacheRequest, WithCache},
        serve::serve,
    };
    pub use axum::response::Response;
    pub use std::sync::LazyLock;
}
