//! The `Store` trait: what a backend must do for cache-page.

use std::{fmt, future::Future, pin::Pin, sync::Arc, time::Duration};

use crate::{Entry, Error};

/// A boxed, `Send` future, as [`Store`] methods return.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A versioned name. Bumping its version invalidates, in O(1), every page that was
/// stored under the old one.
///
/// Group versions are hashed into the keys of their pages (the seed package's
/// scheme). The others are *scopes* every page has implicitly: the versions of its
/// path, its URL and its prefix are read with each lookup and compared with the ones
/// recorded in the entry.
///
/// ```
/// use cache_page_runtime::Version;
///
/// assert_eq!(Version::Path("/a").kind(), "path");
/// assert!(Version::Url("/a?b=1").ttl().is_some());
/// assert!(Version::Url("/a?b=1").bumped_ttl() > Version::Url("/a?b=1").ttl());
/// assert!(Version::Group("views").ttl().is_none());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Version<'a> {
    /// A group named by a handler.
    Group(&'a str),
    /// A URL path: every query string and header variant of it.
    Path(&'a str),
    /// A path with its canonical query string: every header variant of it.
    Url(&'a str),
    /// A handler prefix: every page stored under it.
    Prefix(&'a str),
}

impl Version<'_> {
    /// The kind, as it appears in store keys: `group`, `path`, `url` or `prefix`.
    pub fn kind(&self) -> &'static str {
        match self {
            Version::Group(_) => "group",
            Version::Path(_) => "path",
            Version::Url(_) => "url",
            Version::Prefix(_) => "prefix",
        }
    }

    /// The kind's place in a table of one entry per kind: group 0, path 1, URL 2,
    /// prefix 3.
    pub(crate) fn kind_index(&self) -> usize {
        match self {
            Version::Group(_) => 0,
            Version::Path(_) => 1,
            Version::Url(_) => 2,
            Version::Prefix(_) => 3,
        }
    }

    /// The versioned name.
    pub fn name(&self) -> &str {
        match self {
            Version::Group(n) | Version::Path(n) | Version::Url(n) | Version::Prefix(n) => n,
        }
    }

    /// How long a store keeps this version when it seeds it: path and URL versions
    /// are one per page and would grow with the traffic, so a seeded one lives five
    /// minutes, and a store extends it to the life of a page stored under it; group and
    /// prefix versions are few and are kept. (A version that expires is re-seeded,
    /// which only costs a miss.)
    pub fn ttl(&self) -> Option<Duration> {
        match self {
            Version::Path(_) | Version::Url(_) => Some(Duration::from_secs(300)),
            _ => None,
        }
    }

    /// How long a store keeps this version after an invalidation: a week for path and
    /// URL versions, for ever for the others.
    pub fn bumped_ttl(&self) -> Option<Duration> {
        match self {
            Version::Path(_) | Version::Url(_) => Some(Duration::from_secs(7 * 24 * 3600)),
            _ => None,
        }
    }
}

/// The identity of a page before versions are known.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), cache_page_runtime::Error> {
/// use cache_page_runtime::{MemoryStore, PageKey, Store};
///
/// let store = MemoryStore::new();
/// let groups = ["views".to_owned()];
/// let page = PageKey { prefix: "p", groups: &groups, key: "/a", caller: None, scopes: &[] };
/// let lookup = store.lookup(page).await?;
/// assert!(lookup.entry.is_none());
/// assert_eq!(lookup.hash.len(), 32);
/// # Ok(()) }
/// ```
#[derive(Clone, Copy, Debug)]
pub struct PageKey<'a> {
    /// The handler's prefix (`""` when it has none).
    pub prefix: &'a str,
    /// The page's groups, in the order the handler names them.
    pub groups: &'a [String],
    /// What the key function returned.
    pub key: &'a str,
    /// A digest of the caller's credentials, for handlers that cache requests with
    /// `Authorization`: such pages are never shared between callers.
    pub caller: Option<&'a str>,
    /// Scope versions to read along with the entry (see [`Version`]).
    pub scopes: &'a [Version<'a>],
}

impl PageKey<'_> {
    /// The page's hash with its groups at `versions` (in the order of `groups`).
    pub(crate) fn hash_at<V>(&self, versions: V) -> String
    where
        V: IntoIterator<Item = u64, IntoIter: ExactSizeIterator>,
    {
        let pairs = self.groups.iter().map(String::as_str).zip(versions);
        crate::key::page_hash(self.prefix, pairs, self.key, self.caller)
    }
}

/// The answer to [`Store::lookup`] (see [`PageKey`] for an example).
#[derive(Clone, Debug)]
pub struct Lookup {
    /// The hash of the page at its groups' current versions: where a fresh response
    /// for this page is stored.
    pub hash: String,
    /// The entry stored under `hash`, if any (a damaged one reads as `None`).
    pub entry: Option<Arc<Entry>>,
    /// The current versions of [`PageKey::scopes`], in order.
    pub scopes: Vec<u64>,
}

/// A backend for cache-page: where entries and versions live.
///
/// The crate ships [`MemoryStore`](crate::MemoryStore) and, with the `redis` feature,
/// [`RedisStore`](crate::RedisStore). A store only keeps entries and counters; keys,
/// HTTP rules and fail-open behaviour live above it.
///
/// Versions must never repeat: when one is missing (never set, expired or evicted), a
/// store seeds it with a value larger than any it can have had before, such as the
/// current time in microseconds ([`version_seed`]), so that entries invalidated
/// earlier can never be reached again.
///
/// A store of your own can wrap another, to count or log its operations:
///
/// ```
/// use std::{sync::{Arc, atomic::{AtomicU64, Ordering}}, time::Duration};
/// use cache_page_runtime::{
///     BoxFuture, Cache, Entry, Error, Lookup, MemoryStore, PageKey, Store, Version,
/// };
///
/// #[derive(Debug, Default)]
/// struct Counted { inner: MemoryStore, lookups: Arc<AtomicU64> }
///
/// impl Store for Counted {
///     fn lookup<'a>(&'a self, page: PageKey<'a>) -> BoxFuture<'a, Result<Lookup, Error>> {
///         self.lookups.fetch_add(1, Ordering::Relaxed);
///         self.inner.lookup(page)
///     }
///     fn get<'a>(&'a self, hash: &'a str) -> BoxFuture<'a, Result<Option<Arc<Entry>>, Error>> {
///         self.inner.get(hash)
///     }
///     fn insert<'a>(&'a self, hash: &'a str, entry: Arc<Entry>, tags: &'a [String])
///         -> BoxFuture<'a, Result<(), Error>> {
///         self.inner.insert(hash, entry, tags)
///     }
///     fn remove<'a>(&'a self, hash: &'a str) -> BoxFuture<'a, Result<bool, Error>> {
///         self.inner.remove(hash)
///     }
///     fn bump<'a>(&'a self, version: Version<'a>) -> BoxFuture<'a, Result<u64, Error>> {
///         self.inner.bump(version)
///     }
///     fn version<'a>(&'a self, version: Version<'a>) -> BoxFuture<'a, Result<u64, Error>> {
///         self.inner.version(version)
///     }
///     fn delete_tag<'a>(&'a self, tag: &'a str) -> BoxFuture<'a, Result<u64, Error>> {
///         self.inner.delete_tag(tag)
///     }
/// }
///
/// let cache = Cache::new(Counted::default());
/// # let _ = (cache, Duration::ZERO);
/// ```
pub trait Store: Send + Sync + fmt::Debug + 'static {
    /// Reads the current versions of the page's groups and scopes, and the entry
    /// stored for the page at those group versions, seeding missing versions. A store
    /// should do this in one round trip when it can.
    fn lookup<'a>(&'a self, page: PageKey<'a>) -> BoxFuture<'a, Result<Lookup, Error>>;

    /// Reads the entry stored under `hash`.
    fn get<'a>(&'a self, hash: &'a str) -> BoxFuture<'a, Result<Option<Arc<Entry>>, Error>>;

    /// Stores `entry` under `hash` for [`Entry::store_ttl`], and records it under each
    /// of `tags`. A store that keeps no entry this large returns
    /// [`Error::TooLarge`](crate::Error::TooLarge): the response says so, and the
    /// store's circuit breaker does not count it as a failure.
    fn insert<'a>(
        &'a self,
        hash: &'a str,
        entry: Arc<Entry>,
        tags: &'a [String],
    ) -> BoxFuture<'a, Result<(), Error>>;

    /// Deletes the entry stored under `hash`; `true` if there was one.
    fn remove<'a>(&'a self, hash: &'a str) -> BoxFuture<'a, Result<bool, Error>>;

    /// Moves `version` on, in O(1): every entry stored under the old one becomes
    /// unreachable. Returns the new version.
    fn bump<'a>(&'a self, version: Version<'a>) -> BoxFuture<'a, Result<u64, Error>>;

    /// Moves a group's version on like [`bump`](Self::bump), and remembers for
    /// [`SOFT_WINDOW`] the version it had, so that [`soft_lookup`](Self::soft_lookup)
    /// still finds the pages stored under it. The default is a plain `bump`: on a store
    /// without it, a soft invalidation is a hard one.
    fn bump_soft<'a>(&'a self, group: &'a str) -> BoxFuture<'a, Result<u64, Error>> {
        self.bump(Version::Group(group))
    }

    /// The page as it was stored before the soft invalidations ([`bump_soft`]) of its
    /// groups, if one moved a group to its current version within [`SOFT_WINDOW`] and
    /// the page is still stored at the versions before. The default finds nothing.
    ///
    /// [`bump_soft`]: Self::bump_soft
    fn soft_lookup<'a>(
        &'a self,
        page: PageKey<'a>,
    ) -> BoxFuture<'a, Result<Option<Superseded>, Error>> {
        let _ = page;
        Box::pin(std::future::ready(Ok(None)))
    }

    /// The current value of `version`, seeding it if missing.
    fn version<'a>(&'a self, version: Version<'a>) -> BoxFuture<'a, Result<u64, Error>>;

    /// Deletes every entry recorded under `tag`, and the tag; returns how many entries
    /// were deleted.
    fn delete_tag<'a>(&'a self, tag: &'a str) -> BoxFuture<'a, Result<u64, Error>>;

    /// Takes the lock of the page at `hash` for at most `ttl`, for
    /// [`CacheBuilder::lock_across_instances`](crate::CacheBuilder::lock_across_instances).
    /// `false` when another holder has it. A store private to one process has no
    /// one to share with: the default always succeeds.
    fn lock<'a>(&'a self, hash: &'a str, ttl: Duration) -> BoxFuture<'a, Result<bool, Error>> {
        let _ = (hash, ttl);
        Box::pin(std::future::ready(Ok(true)))
    }

    /// Releases a lock taken with [`lock`](Self::lock).
    fn unlock<'a>(&'a self, hash: &'a str) -> BoxFuture<'a, Result<(), Error>> {
        let _ = hash;
        Box::pin(std::future::ready(Ok(())))
    }
}

/// How long after a soft invalidation ([`Store::bump_soft`]) the pages stored before it
/// can still be found, to be served stale within their handler's `grace`.
pub const SOFT_WINDOW: Duration = Duration::from_secs(24 * 3600);

/// A page found by [`Store::soft_lookup`]: stored before a soft invalidation.
#[derive(Clone, Debug)]
pub struct Superseded {
    /// Where the entry is stored: the page's hash at the versions before.
    pub hash: String,
    /// The entry.
    pub entry: Arc<Entry>,
    /// When the earliest of the soft invalidations that superseded it happened, in
    /// milliseconds since the Unix epoch: its handler's grace counts from there.
    pub invalidated_ms: u64,
}

/// What a store remembers of a group's soft invalidation: the version before, the
/// version it set, and when.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SoftRecord {
    pub(crate) before: u64,
    pub(crate) after: u64,
    pub(crate) at_ms: u64,
}

impl SoftRecord {
    /// Whether the invalidation is less than [`SOFT_WINDOW`] old at `now_ms`.
    pub(crate) fn is_live(&self, now_ms: u64) -> bool {
        u128::from(now_ms.saturating_sub(self.at_ms)) < SOFT_WINDOW.as_millis()
    }
}

impl PageKey<'_> {
    /// The group versions to look the page up at, superseded ones replaced by the
    /// version before, and the earliest time of those replacements; `None` when no
    /// record applies to a group's current version.
    pub(crate) fn superseded_versions(
        &self,
        current: &[u64],
        records: &[Option<SoftRecord>],
    ) -> Option<(Vec<u64>, u64)> {
        let mut earliest: Option<u64> = None;
        let versions = current
            .iter()
            .zip(records)
            .map(|(&v, record)| match record {
                Some(r) if r.after == v => {
                    earliest = Some(earliest.map_or(r.at_ms, |e| e.min(r.at_ms)));
                    r.before
                }
                _ => v,
            })
            .collect();
        earliest.map(|at| (versions, at))
    }
}

/// A version for a name that has none: the current time in microseconds. Versions
/// only grow by one per invalidation, so a new seed is larger than every version the
/// name had before unless it was invalidated more than a million times a second.
///
/// ```
/// let a = cache_page_runtime::version_seed();
/// let b = cache_page_runtime::version_seed();
/// assert!(b >= a && a > 1_600_000_000_000_000);
/// ```
pub fn version_seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_micros() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_records_of_the_current_version_supersede() {
        let groups = ["a".to_owned(), "b".to_owned()];
        let page = PageKey {
            prefix: "",
            groups: &groups,
            key: "/k",
            caller: None,
            scopes: &[],
        };
        let record = |before, after, at_ms| {
            Some(SoftRecord {
                before,
                after,
                at_ms,
            })
        };
        assert_eq!(page.superseded_versions(&[10, 20], &[None, None]), None);
        // A record for an older version of the group: a hard bump came after it.
        assert_eq!(
            page.superseded_versions(&[10, 20], &[record(8, 9, 5), None]),
            None
        );
        assert_eq!(
            page.superseded_versions(&[10, 20], &[record(9, 10, 5), None]),
            Some((vec![9, 20], 5))
        );
        // Both groups: both versions before, timed from the earlier invalidation.
        assert_eq!(
            page.superseded_versions(&[10, 20], &[record(9, 10, 7), record(19, 20, 5)]),
            Some((vec![9, 19], 5))
        );
    }
}
