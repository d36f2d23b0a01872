//! Shared test support for the cache-page integration tests.
//!
//! - [`RedisServer`]: a private `redis-server` per test on a free port (or the server
//!   named by `CACHE_PAGE_REDIS_URL`), killed when dropped.
//! - [`RedisCluster`]: a private Redis Cluster per test (three masters, or three
//!   masters and three replicas), every node killed when dropped; always private, as
//!   a cluster test cannot run on a standalone server.
//! - [`fetch`], [`request`], [`send`]: a request through an axum `Router` (`oneshot`),
//!   read whole into a [`Reply`]; [`TestServer`]: the same over a real socket.
//! - [`Hits`]: counts handler runs.
//! - [`eventually`]: bounded polling; the tests never sleep for a fixed time.
//! - [`both_stores!`]: runs one behaviour test on the in-process store and on Redis.
//!
//! A test gives its cache to the router with `Router::layer(Extension(cache))`: a
//! request carrying a `Cache` extension uses it instead of the process default, so the
//! tests of one binary never share pages.

pub mod bench;
pub mod cluster;
mod redis_server;
mod web;

use std::time::Duration;

use cache_page_runtime::{Cache, MemoryStore, Store};

pub use crate::{
    cluster::RedisCluster,
    redis_server::{
        REDIS_URL_VAR, RedisCli, RedisServer, Watched, free_port, parse_command_calls,
        unique_namespace,
    },
    web::{
        Gated, Hits, Reply, TestServer, fetch, fetch_with, http1_request, parse_http1_response,
        request, send,
    },
};

/// The program `name` in a directory of `PATH`, if there is one.
pub fn on_path(name: &str) -> Option<std::path::PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// A cache on a new in-process store.
pub fn memory_cache() -> Cache {
    patient_cache(MemoryStore::new())
}

/// A cache on `store` that waits up to 5 s for it, so that a loaded machine does not
/// turn a behaviour test into a miss. Tests of the timeouts build their cache
/// themselves.
pub fn patient_cache(store: impl Store) -> Cache {
    Cache::builder(store)
        .timeout(Duration::from_secs(5))
        .build()
}

/// Polls `check` until it returns `true`, at most `timeout`; panics saying `what` was
/// awaited if it never does. The interval between polls is 20 ms.
pub async fn eventually(timeout: Duration, what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if check().await {
            return;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting until {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Fetches `uri` from `app` until one fetch is a hit that made `server` run one
/// `command` and nothing else (at most 10 s), and returns the body of that hit.
/// `server` must be private: other tests' commands would count.
///
/// With `"get"`, the store's tracking connection is up and has learnt the page's
/// versions (see `RedisStoreBuilder::tracked_versions`); with `"ping"`, it also keeps
/// the page in process (see `RedisStoreBuilder::near_cache_bytes`).
pub async fn until_a_hit_is_one(
    server: &RedisServer,
    app: &axum::Router,
    uri: &str,
    command: &str,
) -> String {
    let one = std::collections::BTreeMap::from([(command.to_owned(), 1)]);
    until_a_hit_runs(server, app, uri, &one).await
}

/// Fetches `uri` from `app` until one fetch is a hit that made `server` run exactly
/// `commands` (by name, with their calls; empty: none at all), at most 10 s, and
/// returns the body of that hit. `server` must be private.
pub async fn until_a_hit_runs(
    server: &RedisServer,
    app: &axum::Router,
    uri: &str,
    commands: &std::collections::BTreeMap<String, u64>,
) -> String {
    let mut body = String::new();
    eventually(
        Duration::from_secs(10),
        &format!("a hit runs {commands:?}"),
        async || {
            let mut hit = None;
            let ran = server
                .commands_during(async || hit = Some(fetch(app, uri).await))
                .await;
            let hit = hit.expect("fetched");
            body = hit.text();
            hit.is_hit() && ran == *commands
        },
    )
    .await;
    body
}

/// Runs behaviour tests on both stores. For each `async fn name(cache: Cache)` named,
/// expands to a module `name` with two tests, `name::memory` (a new
/// [`MemoryStore`](cache_page_runtime::MemoryStore)) and `name::redis` (a
/// [`RedisServer`] of its own and a namespace of its own).
///
/// ```ignore
/// async fn hit(cache: Cache) { /* … */ }
/// async fn miss(cache: Cache) { /* … */ }
/// both_stores!(hit, miss);
/// ```
#[macro_export]
macro_rules! both_stores {
    ($($test:ident),+ $(,)?) => {$(
        mod $test {
            #[::tokio::test]
            async fn memory() {
                super::$test($crate::memory_cache()).await;
            }

            #[::tokio::test]
            async fn redis() {
                let server = $crate::RedisServer::start();
                super::$test(server.cache(::core::stringify!($test))).await;
                ::core::mem::drop(server);
            }
        }
    )+};
}
