//! `MemoryStore`: the in-process store, bounded in entries and bytes, TTL-aware.

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use moka::sync::Cache as Moka;

use crate::{
    Entry, Error,
    key::page_hash,
    store::{BoxFuture, Lookup, PageKey, Store, Version, version_seed},
};

/// The in-process store: the default when nothing else is installed.
///
/// Bounded in bytes and in entries (the least recently used entries go first), and
/// every entry expires after its own timeout. Group versions are kept beside the
/// entries and are never evicted.
///
/// # Example
///
/// ```
/// use cache_page_runtime::{Cache, MemoryStore};
///
/// let store = MemoryStore::builder()
///     .max_entries(50_000)
///     .max_bytes(256 * 1024 * 1024)
///     .build();
/// let cache = Cache::new(store);
/// # let _ = cache;
/// ```
#[derive(Clone)]
pub struct MemoryStore {
    entries: Moka<String, Arc<Entry>>,
    /// Versions by `"<kind>:<name>"`. Never evicted, so never re-seeded.
    versions: Arc<Mutex<HashMap<String, u64>>>,
    /// The hashes recorded under each tag.
    tags: Arc<Mutex<HashMap<String, HashSet<String>>>>,
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore")
            .field("entries", &self.entries.entry_count())
            .field("bytes", &self.entries.weighted_size())
            .finish()
    }
}

/// Builds a [`MemoryStore`].
///
/// ```
/// let store = cache_page_runtime::MemoryStore::builder().max_entries(100).build();
/// assert_eq!(store.entry_count(), 0);
/// ```
#[derive(Debug, Clone)]
pub struct MemoryStoreBuilder {
    max_entries: u64,
    max_bytes: u64,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn version_name(v: Version<'_>) -> String {
    format!("{}:{}", v.kind(), v.name())
}

impl MemoryStore {
    /// A store of at most 10,000 entries and 64 MiB.
    pub fn new() -> Self {
        Self::builder().build()
    }

    /// Starts a builder with the defaults of [`new`](Self::new).
    pub fn builder() -> MemoryStoreBuilder {
        MemoryStoreBuilder {
            max_entries: 10_000,
            max_bytes: 64 * 1024 * 1024,
        }
    }

    /// Number of entries held (after pending evictions are applied).
    pub fn entry_count(&self) -> u64 {
        self.entries.run_pending_tasks();
        self.entries.entry_count()
    }

    /// Bytes of entries held (after pending evictions are applied).
    pub fn weighted_size(&self) -> u64 {
        self.entries.run_pending_tasks();
        self.entries.weighted_size()
    }

    fn current(&self, versions: impl Iterator<Item = String>) -> Vec<u64> {
        let mut map = lock(&self.versions);
        versions
            .map(|name| *map.entry(name).or_insert_with(version_seed))
            .collect()
    }
}

impl MemoryStoreBuilder {
    /// Most entries held at once (default 10,000).
    pub fn max_entries(mut self, n: u64) -> Self {
        self.max_entries = n.max(1);
        self
    }

    /// Most bytes of entries held at once, headers and bodies (default 64 MiB).
    pub fn max_bytes(mut self, n: u64) -> Self {
        self.max_bytes = n.max(1);
        self
    }

    /// Builds the store.
    pub fn build(self) -> MemoryStore {
        // Each entry weighs at least max_bytes / max_entries, so the byte bound also
        // bounds the count.
        let floor = (self.max_bytes / self.max_entries).max(1);
        let entries = Moka::builder()
            .max_capacity(self.max_bytes)
            .weigher(move |key: &String, e: &Arc<Entry>| {
                let size = key.len()
                    + e.body.len()
                    + e.headers
                        .iter()
                        .map(|(n, v)| n.as_str().len() + v.len())
                        .sum::<usize>();
                u32::try_from((size as u64).max(floor)).unwrap_or(u32::MAX)
            })
            .expire_after(EntryTtl)
            .build();
        MemoryStore {
            entries,
            versions: Arc::default(),
            tags: Arc::default(),
        }
    }
}

struct EntryTtl;

impl moka::Expiry<String, Arc<Entry>> for EntryTtl {
    fn expire_after_create(&self, _: &String, e: &Arc<Entry>, _: Instant) -> Option<Duration> {
        Some(e.store_ttl())
    }
    fn expire_after_update(
        &self,
        _: &String,
        e: &Arc<Entry>,
        _: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        Some(e.store_ttl())
    }
}

impl Store for MemoryStore {
    fn lookup<'a>(&'a self, page: PageKey<'a>) -> BoxFuture<'a, Result<Lookup, Error>> {
        let groups = self.current(page.groups.iter().map(|g| version_name(Version::Group(g))));
        let scopes = self.current(page.scopes.iter().map(|v| version_name(*v)));
        let pairs: Vec<(&str, u64)> = page.groups.iter().map(String::as_str).zip(groups).collect();
        let hash = page_hash(page.prefix, &pairs, page.key, page.caller);
        let entry = self.entries.get(&hash);
        Box::pin(std::future::ready(Ok(Lookup {
            hash,
            entry,
            scopes,
        })))
    }

    fn get<'a>(&'a self, hash: &'a str) -> BoxFuture<'a, Result<Option<Arc<Entry>>, Error>> {
        Box::pin(std::future::ready(Ok(self.entries.get(hash))))
    }

    fn insert<'a>(
        &'a self,
        hash: &'a str,
        entry: Arc<Entry>,
        tags: &'a [String],
    ) -> BoxFuture<'a, Result<(), Error>> {
        self.entries.insert(hash.to_owned(), entry);
        if !tags.is_empty() {
            let mut index = lock(&self.tags);
            for tag in tags {
                index
                    .entry(tag.clone())
                    .or_default()
                    .insert(hash.to_owned());
            }
        }
        Box::pin(std::future::ready(Ok(())))
    }

    fn remove<'a>(&'a self, hash: &'a str) -> BoxFuture<'a, Result<bool, Error>> {
        let removed = self.entries.remove(hash).is_some();
        Box::pin(std::future::ready(Ok(removed)))
    }

    fn bump<'a>(&'a self, version: Version<'a>) -> BoxFuture<'a, Result<u64, Error>> {
        let mut map = lock(&self.versions);
        let v = map
            .entry(version_name(version))
            .or_insert_with(version_seed);
        *v += 1;
        let v = *v;
        Box::pin(std::future::ready(Ok(v)))
    }

    fn version<'a>(&'a self, version: Version<'a>) -> BoxFuture<'a, Result<u64, Error>> {
        let v = self.current(std::iter::once(version_name(version)))[0];
        Box::pin(std::future::ready(Ok(v)))
    }

    fn delete_tag<'a>(&'a self, tag: &'a str) -> BoxFuture<'a, Result<u64, Error>> {
        let hashes = lock(&self.tags).remove(tag).unwrap_or_default();
        let mut deleted = 0;
        for hash in hashes {
            if self.entries.remove(&hash).is_some() {
                deleted += 1;
            }
        }
        Box::pin(std::future::ready(Ok(deleted)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use http::StatusCode;

    fn entry(body: &'static [u8], ttl: Duration) -> Arc<Entry> {
        Arc::new(Entry {
            status: StatusCode::OK,
            headers: vec![],
            body: Bytes::from_static(body),
            created_ms: 0,
            ttl,
            grace: Duration::ZERO,
            origin: String::new(),
            scopes: vec![],
            vary: None,
        })
    }

    fn page<'a>(groups: &'a [String], key: &'a str) -> PageKey<'a> {
        PageKey {
            prefix: "",
            groups,
            key,
            caller: None,
            scopes: &[],
        }
    }

    async fn get(store: &MemoryStore, groups: &[String], key: &str) -> Lookup {
        store.lookup(page(groups, key)).await.unwrap()
    }

    #[tokio::test]
    async fn stores_and_finds_an_entry() {
        let store = MemoryStore::new();
        let groups = vec!["g".to_owned()];
        let miss = get(&store, &groups, "/a").await;
        assert!(miss.entry.is_none());
        store
            .insert(&miss.hash, entry(b"a", Duration::from_secs(60)), &[])
            .await
            .unwrap();
        let hit = get(&store, &groups, "/a").await;
        assert_eq!(hit.hash, miss.hash);
        assert_eq!(hit.entry.unwrap().body, "a");
        assert!(get(&store, &groups, "/b").await.entry.is_none());
    }

    #[tokio::test]
    async fn invalidating_a_group_moves_its_pages_only() {
        let store = MemoryStore::new();
        let (g1, g2) = (vec!["one".to_owned()], vec!["two".to_owned()]);
        for groups in [&g1, &g2] {
            let l = get(&store, groups, "/a").await;
            store
                .insert(&l.hash, entry(b"x", Duration::from_secs(60)), &[])
                .await
                .unwrap();
        }
        let before = store.version(Version::Group("one")).await.unwrap();
        let after = store.bump(Version::Group("one")).await.unwrap();
        assert_eq!(after, before + 1);
        assert!(get(&store, &g1, "/a").await.entry.is_none());
        assert!(get(&store, &g2, "/a").await.entry.is_some());
    }

    #[tokio::test]
    async fn versions_are_seeded_from_the_clock() {
        let store = MemoryStore::new();
        // Microseconds since the epoch: far above anything INCR from zero would reach.
        assert!(store.version(Version::Group("new")).await.unwrap() > 1_600_000_000_000_000);
    }

    #[tokio::test]
    async fn bounded_in_entries() {
        let store = MemoryStore::builder()
            .max_entries(10)
            .max_bytes(1 << 20)
            .build();
        for i in 0..100 {
            let key = format!("/{i}");
            let l = get(&store, &[], &key).await;
            store
                .insert(&l.hash, entry(b"x", Duration::from_secs(60)), &[])
                .await
                .unwrap();
        }
        assert!(store.entry_count() <= 10, "{}", store.entry_count());
    }

    #[tokio::test]
    async fn bounded_in_bytes() {
        static BIG: [u8; 10_000] = [7; 10_000];
        let store = MemoryStore::builder()
            .max_entries(1_000)
            .max_bytes(50_000)
            .build();
        for i in 0..100 {
            let key = format!("/{i}");
            let l = get(&store, &[], &key).await;
            store
                .insert(&l.hash, entry(&BIG, Duration::from_secs(60)), &[])
                .await
                .unwrap();
        }
        store.entries.run_pending_tasks();
        assert!(
            store.entries.weighted_size() <= 50_000,
            "{}",
            store.entries.weighted_size()
        );
    }
}
