//! `MemoryStore`: the in-process store, bounded in entries and bytes, TTL-aware.

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex, RwLock},
    time::{Duration, Instant},
};

use moka::{notification::RemovalCause, sync::Cache as Moka};

use crate::{
    Entry, Error,
    entry::unix_ms,
    store::{BoxFuture, Lookup, PageKey, SoftRecord, Store, Superseded, Version, version_seed},
};

/// The in-process store: the default when nothing else is installed.
///
/// Bounded in bytes and in entries (the least recently used entries go first), and
/// every entry expires after its own timeout plus grace. Group and prefix versions are
/// kept beside the entries and never evicted; path and URL versions (one per page) are
/// bounded like the entries, and a forgotten one is re-seeded, which costs a miss.
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
    /// Keyed by page hash: md5 hex, which no request can steer into collisions, so a
    /// fast hasher is safe there.
    entries: Moka<String, Arc<Entry>, foldhash::fast::RandomState>,
    versions: Arc<Versions>,
    tags: Arc<Mutex<TagIndex>>,
}

/// Versions by kind, read without allocating.
struct Versions {
    groups: RwLock<HashMap<String, u64>>,
    prefixes: RwLock<HashMap<String, u64>>,
    paths: RwLock<Scoped>,
    urls: RwLock<Scoped>,
    /// The groups' soft invalidations within [`SOFT_WINDOW`](crate::SOFT_WINDOW), at most `soft_capacity`.
    soft: Mutex<HashMap<String, SoftRecord>>,
    soft_capacity: usize,
}

/// Path or URL versions: one per page would grow with the traffic, so only the names
/// that were invalidated are kept; every other name has the version `epoch`. The map
/// is bounded: when it is full, it is emptied and `epoch` moves above every version it
/// held, so no page stored before can match again (each costs one miss).
struct Scoped {
    bumped: HashMap<String, u64>,
    epoch: u64,
    capacity: usize,
}

impl Scoped {
    fn new(capacity: usize) -> Self {
        Scoped {
            bumped: HashMap::new(),
            epoch: version_seed(),
            capacity,
        }
    }

    fn get(&self, name: &str) -> u64 {
        self.bumped.get(name).copied().unwrap_or(self.epoch)
    }

    fn bump(&mut self, name: &str) -> u64 {
        if self.bumped.len() >= self.capacity && !self.bumped.contains_key(name) {
            let highest = self.bumped.values().copied().max().unwrap_or(self.epoch);
            self.epoch = version_seed().max(highest.max(self.epoch) + 1);
            self.bumped.clear();
        }
        let epoch = self.epoch;
        let v = self.bumped.entry(name.to_owned()).or_insert(epoch);
        *v += 1;
        *v
    }
}

/// Which entries each tag holds, and the reverse, so that an entry that leaves the
/// store (evicted, expired, removed) leaves the index too.
#[derive(Default)]
struct TagIndex {
    by_tag: HashMap<String, HashSet<String>>,
    by_hash: HashMap<String, Vec<String>>,
}

impl TagIndex {
    fn forget(&mut self, hash: &str) {
        for tag in self.by_hash.remove(hash).unwrap_or_default() {
            if let Some(hashes) = self.by_tag.get_mut(&tag) {
                hashes.remove(hash);
                if hashes.is_empty() {
                    self.by_tag.remove(&tag);
                }
            }
        }
    }
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

impl Versions {
    fn kept(&self, version: Version<'_>) -> Option<&RwLock<HashMap<String, u64>>> {
        match version {
            Version::Group(_) => Some(&self.groups),
            Version::Prefix(_) => Some(&self.prefixes),
            _ => None,
        }
    }

    fn scoped(&self, version: Version<'_>) -> &RwLock<Scoped> {
        match version {
            Version::Path(_) => &self.paths,
            _ => &self.urls,
        }
    }

    /// The current value of `version`, seeding it if missing.
    fn current(&self, version: Version<'_>) -> u64 {
        let name = version.name();
        match self.kept(version) {
            Some(map) => {
                if let Some(v) = map.read().unwrap_or_else(|e| e.into_inner()).get(name) {
                    return *v;
                }
                let mut map = map.write().unwrap_or_else(|e| e.into_inner());
                *map.entry(name.to_owned()).or_insert_with(version_seed)
            }
            None => self
                .scoped(version)
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .get(name),
        }
    }

    fn bump(&self, version: Version<'_>) -> u64 {
        let name = version.name();
        match self.kept(version) {
            Some(map) => {
                let mut map = map.write().unwrap_or_else(|e| e.into_inner());
                let v = map.entry(name.to_owned()).or_insert_with(version_seed);
                *v += 1;
                *v
            }
            None => self
                .scoped(version)
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .bump(name),
        }
    }

    /// Bumps `group` and remembers the version before, for [`SOFT_WINDOW`](crate::SOFT_WINDOW).
    fn bump_soft(&self, group: &str) -> u64 {
        let mut groups = self.groups.write().unwrap_or_else(|e| e.into_inner());
        let v = groups.entry(group.to_owned()).or_insert_with(version_seed);
        let before = *v;
        *v += 1;
        let after = *v;
        let now = unix_ms(std::time::SystemTime::now());
        let mut soft = lock(&self.soft);
        if soft.len() >= self.soft_capacity && !soft.contains_key(group) {
            soft.retain(|_, r| r.is_live(now));
            if soft.len() >= self.soft_capacity {
                // Forgetting a record only turns a soft invalidation into a hard one.
                soft.clear();
            }
        }
        soft.insert(
            group.to_owned(),
            SoftRecord {
                before,
                after,
                at_ms: now,
            },
        );
        after
    }

    /// The soft invalidation of `group` within [`SOFT_WINDOW`](crate::SOFT_WINDOW), if any.
    fn soft_record(&self, group: &str, now_ms: u64) -> Option<SoftRecord> {
        lock(&self.soft)
            .get(group)
            .copied()
            .filter(|r| r.is_live(now_ms))
    }
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

    /// Number of tags with at least one entry (after pending evictions are applied).
    pub fn tag_count(&self) -> usize {
        self.entries.run_pending_tasks();
        lock(&self.tags).by_tag.len()
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
        let tags: Arc<Mutex<TagIndex>> = Arc::default();
        let index = Arc::downgrade(&tags);
        let entries = Moka::builder()
            .max_capacity(self.max_bytes)
            .weigher(move |key: &String, e: &Arc<Entry>| {
                let size = key.len() + e.weight();
                u32::try_from((size as u64).max(floor)).unwrap_or(u32::MAX)
            })
            .expire_after(EntryTtl)
            .eviction_listener(move |hash: Arc<String>, _, cause| {
                // A replaced entry keeps its hash, whose tags were just recorded.
                if cause != RemovalCause::Replaced
                    && let Some(index) = index.upgrade()
                {
                    lock(&index).forget(&hash);
                }
            })
            .build_with_hasher(foldhash::fast::RandomState::default());
        // Invalidated paths and URLs kept: as many as pages, at least 1,024.
        let capacity = usize::try_from(self.max_entries)
            .unwrap_or(usize::MAX)
            .max(1024);
        let scoped = || RwLock::new(Scoped::new(capacity));
        MemoryStore {
            entries,
            versions: Arc::new(Versions {
                groups: RwLock::default(),
                prefixes: RwLock::default(),
                paths: scoped(),
                urls: scoped(),
                soft: Mutex::default(),
                soft_capacity: capacity,
            }),
            tags,
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

impl MemoryStore {
    /// [`Store::lookup`], answered at once.
    pub(crate) fn lookup_now(&self, page: PageKey<'_>) -> Lookup {
        let hash = page.hash_at(
            page.groups
                .iter()
                .map(|g| self.versions.current(Version::Group(g))),
        );
        let scopes = page
            .scopes
            .iter()
            .map(|v| self.versions.current(*v))
            .collect();
        let entry = self.entries.get(&hash);
        Lookup {
            hash,
            entry,
            scopes,
        }
    }
}

impl Store for MemoryStore {
    fn lookup<'a>(&'a self, page: PageKey<'a>) -> BoxFuture<'a, Result<Lookup, Error>> {
        Box::pin(std::future::ready(Ok(self.lookup_now(page))))
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
        if !tags.is_empty() {
            let mut index = lock(&self.tags);
            for tag in tags {
                index
                    .by_tag
                    .entry(tag.clone())
                    .or_default()
                    .insert(hash.to_owned());
            }
            index
                .by_hash
                .entry(hash.to_owned())
                .or_default()
                .extend(tags.iter().cloned());
        }
        self.entries.insert(hash.to_owned(), entry);
        Box::pin(std::future::ready(Ok(())))
    }

    fn remove<'a>(&'a self, hash: &'a str) -> BoxFuture<'a, Result<bool, Error>> {
        let removed = self.entries.remove(hash).is_some();
        Box::pin(std::future::ready(Ok(removed)))
    }

    fn bump<'a>(&'a self, version: Version<'a>) -> BoxFuture<'a, Result<u64, Error>> {
        let v = self.versions.bump(version);
        Box::pin(std::future::ready(Ok(v)))
    }

    fn version<'a>(&'a self, version: Version<'a>) -> BoxFuture<'a, Result<u64, Error>> {
        let v = self.versions.current(version);
        Box::pin(std::future::ready(Ok(v)))
    }

    fn bump_soft<'a>(&'a self, group: &'a str) -> BoxFuture<'a, Result<u64, Error>> {
        let v = self.versions.bump_soft(group);
        Box::pin(std::future::ready(Ok(v)))
    }

    fn soft_lookup<'a>(
        &'a self,
        page: PageKey<'a>,
    ) -> BoxFuture<'a, Result<Option<Superseded>, Error>> {
        let now = unix_ms(std::time::SystemTime::now());
        let current: Vec<u64> = page
            .groups
            .iter()
            .map(|g| self.versions.current(Version::Group(g)))
            .collect();
        let records: Vec<Option<SoftRecord>> = page
            .groups
            .iter()
            .map(|g| self.versions.soft_record(g, now))
            .collect();
        let found =
            page.superseded_versions(&current, &records)
                .and_then(|(versions, invalidated_ms)| {
                    let hash = page.hash_at(versions.iter().copied());
                    let entry = self.entries.get(&hash)?;
                    Some(Superseded {
                        hash,
                        entry,
                        invalidated_ms,
                    })
                });
        Box::pin(std::future::ready(Ok(found)))
    }

    fn delete_tag<'a>(&'a self, tag: &'a str) -> BoxFuture<'a, Result<u64, Error>> {
        let hashes = lock(&self.tags).by_tag.remove(tag).unwrap_or_default();
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

    #[tokio::test]
    async fn deleting_a_tag_deletes_its_entries_only() {
        let store = MemoryStore::new();
        let tagged = vec!["t".to_owned()];
        let a = get(&store, &[], "/a").await.hash;
        let b = get(&store, &[], "/b").await.hash;
        store
            .insert(&a, entry(b"a", Duration::from_secs(60)), &tagged)
            .await
            .unwrap();
        store
            .insert(&b, entry(b"b", Duration::from_secs(60)), &[])
            .await
            .unwrap();
        assert_eq!(store.delete_tag("t").await.unwrap(), 1);
        assert!(get(&store, &[], "/a").await.entry.is_none());
        assert!(get(&store, &[], "/b").await.entry.is_some());
        assert_eq!(store.delete_tag("t").await.unwrap(), 0);
    }

    #[tokio::test]
    async fn evicted_entries_leave_the_tag_index() {
        let store = MemoryStore::builder()
            .max_entries(10)
            .max_bytes(1 << 20)
            .build();
        for i in 0..100 {
            let key = format!("/{i}");
            let hash = get(&store, &[], &key).await.hash;
            let tags = vec![format!("t{i}")];
            store
                .insert(&hash, entry(b"x", Duration::from_secs(60)), &tags)
                .await
                .unwrap();
        }
        // At most ten entries are left, so at most ten tags.
        assert!(store.tag_count() <= 10, "{}", store.tag_count());
        assert!(store.tag_count() > 0);
    }

    #[tokio::test]
    async fn a_replaced_entry_keeps_its_tags() {
        let store = MemoryStore::new();
        let tags = vec!["t".to_owned()];
        let hash = get(&store, &[], "/a").await.hash;
        store
            .insert(&hash, entry(b"x", Duration::from_secs(60)), &tags)
            .await
            .unwrap();
        store
            .insert(&hash, entry(b"y", Duration::from_secs(60)), &tags)
            .await
            .unwrap();
        assert_eq!(store.tag_count(), 1);
        assert_eq!(store.delete_tag("t").await.unwrap(), 1);
    }

    #[tokio::test]
    async fn path_and_url_versions_are_bounded_and_never_repeat() {
        let store = MemoryStore::builder().max_entries(10).build();
        // Reading versions keeps nothing.
        for i in 0..10_000 {
            let url = format!("/p?r={i}");
            store.version(Version::Url(&url)).await.unwrap();
        }
        assert!(store.versions.urls.read().unwrap().bumped.is_empty());
        // Invalidating keeps at most the capacity, and no version comes back.
        let first = store.version(Version::Url("/p?r=0")).await.unwrap();
        let mut seen = vec![first];
        for i in 0..3_000 {
            let url = format!("/p?r={i}");
            seen.push(store.bump(Version::Url(&url)).await.unwrap());
        }
        assert!(store.versions.urls.read().unwrap().bumped.len() <= 1024);
        let now = store.version(Version::Url("/p?r=0")).await.unwrap();
        assert!(
            !seen[..1].contains(&now),
            "the version before the first bump came back"
        );
        let bumped_0 = seen[1];
        assert_ne!(now, bumped_0);
    }
}
