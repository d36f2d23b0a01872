//! The `Store` trait: what a backend must do for cache-page.

use std::{fmt, future::Future, pin::Pin, sync::Arc, time::Duration};

use crate::{Entry, Error};

/// A boxed, `Send` future, as [`Store`] methods return.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The identity of a page before group versions are known: its prefix, the names of its
/// groups, and the output of its key function.
#[derive(Clone, Copy, Debug)]
pub struct PageKey<'a> {
    /// The handler's prefix (`""` when it has none).
    pub prefix: &'a str,
    /// The page's groups, in the order the handler names them.
    pub groups: &'a [String],
    /// What the key function returned.
    pub key: &'a str,
}

/// The answer to [`Store::lookup`].
#[derive(Clone, Debug)]
pub struct Lookup {
    /// The hash of the page at its groups' current versions ([`crate::hash_key`]):
    /// where a fresh response for this page is to be stored.
    pub hash: String,
    /// The entry stored under `hash`, if any (a damaged one reads as `None`).
    pub entry: Option<Arc<Entry>>,
}

/// A backend for cache-page: where entries and group versions live.
///
/// The crate ships [`MemoryStore`](crate::MemoryStore) and, with the `redis` feature,
/// [`RedisStore`](crate::RedisStore). A store only keeps bytes and counters; keys,
/// HTTP rules and fail-open behaviour live in the runtime, above it.
///
/// Group versions must never repeat: when a version is missing (never set, expired or
/// evicted), a store seeds it with a value larger than any it can have had before, such
/// as the current time in microseconds, so that entries invalidated earlier can never be
/// reached again.
pub trait Store: Send + Sync + fmt::Debug + 'static {
    /// Reads the current versions of `page.groups` and the entry stored for the page at
    /// those versions. Seeds missing versions.
    fn lookup<'a>(&'a self, page: PageKey<'a>) -> BoxFuture<'a, Result<Lookup, Error>>;

    /// Stores `entry` under `hash` (from [`Lookup::hash`]) for `ttl`.
    fn insert<'a>(
        &'a self,
        hash: &'a str,
        entry: Arc<Entry>,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<(), Error>>;

    /// Deletes the entry stored under `hash`; `true` if there was one.
    fn remove<'a>(&'a self, hash: &'a str) -> BoxFuture<'a, Result<bool, Error>>;

    /// Moves `group` to a new version, in O(1): every entry stored at an older version
    /// becomes unreachable. Returns the new version.
    fn invalidate_group<'a>(&'a self, group: &'a str) -> BoxFuture<'a, Result<u64, Error>>;

    /// The current version of `group`, seeding it if missing.
    fn group_version<'a>(&'a self, group: &'a str) -> BoxFuture<'a, Result<u64, Error>>;
}

/// A version for a group that has none: the current time in microseconds. Versions only
/// grow by one per invalidation, so a new seed is larger than every version the group
/// had before unless it was invalidated more than a million times a second.
pub(crate) fn version_seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_micros() as u64)
}
