//! `MemoryStore`: the in-process store, bounded in entries and bytes, TTL-aware.

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex, RwLock},
};

use crate::{
    Entry, Error,
    entry::{Now, unix_ms},
    replica::{self, Answer, Generation},
    store::{BoxFuture, Lookup, PageKey, SoftRecord, Store, Superseded, Version, version_seed},
};

/// The in-process store: the default when nothing else is installed.
///
/// Bounded in bytes and in entries (entries not read lately go first), and every
/// entry expires after its own timeout plus grace, counted from its `created_ms`: it
/// is not found after that, and its room is taken back when it is next looked up,
/// counted or evicted. Group and prefix versions are kept beside the entries and never
/// evicted; path and URL versions (one per page) are bounded like the entries, and a
/// forgotten one is re-seeded, which costs a miss.
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
    entries: Arc<Entries>,
    versions: Arc<Versions>,
    tags: Arc<Mutex<TagIndex>>,
    /// Moved after every change a thread's copy of a page could miss (see `replica`);
    /// `None` when the store keeps no per-thread copies.
    generation: Option<Arc<Generation>>,
}

/// The entries, by page hash.
///
/// A quick_cache cache (CLOCK-Pro eviction, sharded locks), not moka: a hit reads it
/// on every request, and quick_cache's read is a shard's read lock and a probe, where
/// moka's also reads the clock and queues the read for its eviction policy. Expiry is
/// checked by the reader against the entry's own age instead.
type Entries =
    quick_cache::sync::Cache<String, Arc<Entry>, Weight, foldhash::fast::RandomState, Evicted>;

/// An entry's weight against an in-process cache's bytes (this store's `max_bytes`,
/// the near cache's `near_cache_bytes`): its hash and the entry's body, headers and
/// URL, and at least `floor` (here `max_bytes / max_entries`, so that the byte bound
/// also bounds the count; 0 for the near cache).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Weight {
    pub(crate) floor: u64,
}

impl<K: AsRef<str>> quick_cache::Weighter<K, Arc<Entry>> for Weight {
    fn weight(&self, hash: &K, entry: &Arc<Entry>) -> u64 {
        ((hash.as_ref().len() + entry.weight()) as u64).max(self.floor)
    }
}

/// Collects the hashes an insert evicts (or replaces, or refuses as too large), for
/// the insert to take them out of the tag index once the cache's lock is released.
#[derive(Clone, Copy, Debug, Default)]
struct Evicted;

/// What one insert evicted: the hashes, and whether one of the entries was the one
/// inserted (`inserting`), which the cache refused as larger than its shard.
#[derive(Default)]
struct Insert {
    inserting: Option<Arc<Entry>>,
    evicted: Vec<String>,
    refused: bool,
}

impl quick_cache::Lifecycle<String, Arc<Entry>> for Evicted {
    type RequestState = Insert;

    fn on_evict(&self, insert: &mut Insert, hash: String, entry: Arc<Entry>) {
        if insert
            .inserting
            .as_ref()
            .is_some_and(|inserting| Arc::ptr_eq(inserting, &entry))
        {
            insert.refused = true;
        }
        insert.evicted.push(hash);
    }
}

/// The options of an in-process cache of at most `bytes`: shards of at least 4 MiB
/// each (a page larger than its shard is not kept), and no more than quick_cache would
/// choose for the machine's cores.
pub(crate) fn sharded(bytes: u64, estimated_items: usize) -> quick_cache::Options {
    const SHARD_BYTES: u64 = 4 * 1024 * 1024;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let shards = usize::try_from(bytes / SHARD_BYTES)
        .unwrap_or(usize::MAX)
        .clamp(1, cores * 4);
    quick_cache::OptionsBuilder::new()
        .shards(shards)
        .estimated_items_capacity(estimated_items.max(1))
        .weight_capacity(bytes)
        .build()
        .expect("shards, items and weight are set")
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
            .field("entries", &self.entries.len())
            .field("bytes", &self.entries.weight())
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
    thread_copies: bool,
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
            thread_copies: true,
        }
    }

    /// Number of entries held (expired ones are dropped first).
    pub fn entry_count(&self) -> u64 {
        self.drop_expired();
        self.entries.len() as u64
    }

    /// Bytes of entries held (expired ones are dropped first).
    pub fn weighted_size(&self) -> u64 {
        self.drop_expired();
        self.entries.weight()
    }

    /// Number of tags with at least one entry (expired ones are dropped first).
    pub fn tag_count(&self) -> usize {
        self.drop_expired();
        lock(&self.tags).by_tag.len()
    }

    /// Drops every expired entry: one pass over all of them.
    fn drop_expired(&self) {
        let now = Now::read();
        let expired = Mutex::new(Vec::new());
        self.entries.retain(|hash, entry| {
            let live = !entry.is_expired(now);
            if !live {
                lock(&expired).push(hash.clone());
            }
            live
        });
        let expired = expired.into_inner().unwrap_or_else(|e| e.into_inner());
        if !expired.is_empty() {
            let mut tags = lock(&self.tags);
            for hash in &expired {
                tags.forget(hash);
            }
        }
    }

    /// `entry`, just read at `hash`, unless it expired at `now`: then it is dropped
    /// (it, not an entry stored there since).
    fn unexpired(&self, hash: &str, entry: Arc<Entry>, now: Now) -> Option<Arc<Entry>> {
        if !entry.is_expired(now) {
            return Some(entry);
        }
        if self
            .entries
            .remove_if(hash, |held| Arc::ptr_eq(held, &entry))
            .is_some()
        {
            lock(&self.tags).forget(hash);
        }
        None
    }

    /// Removes the entry at `hash`, and it from the tag index.
    fn remove_now(&self, hash: &str) -> bool {
        let removed = self.entries.remove(hash).is_some();
        if removed {
            lock(&self.tags).forget(hash);
            self.moved();
        }
        removed
    }

    /// Moves the generation after a change that a thread's copy of a page could miss.
    fn moved(&self) {
        if let Some(generation) = &self.generation {
            generation.bump();
        }
    }
}

impl MemoryStoreBuilder {
    /// Most entries held at once (default 10,000).
    pub fn max_entries(mut self, n: u64) -> Self {
        self.max_entries = n.max(1);
        self
    }

    /// Most bytes of entries held at once, headers and bodies (default 64 MiB).
    ///
    /// The store is split into shards of at least 4 MiB each (fewer when `n` is
    /// smaller, no more than four per core), and an entry larger than one shard is not
    /// kept: with the default, pages up to about 8 MiB on two cores, 4 MiB on more. A
    /// larger page is served, and its `Cache-Status` says `detail=too-large`.
    pub fn max_bytes(mut self, n: u64) -> Self {
        self.max_bytes = n.max(1);
        self
    }

    /// Whether each thread keeps its own copies of the pages it serves most (default
    /// `true`).
    ///
    /// Pages that two cores serve from one shared entry make each core wait for the
    /// cache lines of its reference counts and locks, which the other core has just
    /// written. With copies, a thread serves a page found twice in the store from a
    /// copy of its own, while nothing was invalidated since, and skips hashing the key
    /// and reading the versions. Copies are of pages up to 64 KiB, at most 1 MiB of
    /// them per thread, and are not counted in `max_bytes`. An invalidation, a removal
    /// or a replacement is seen by the next lookup on every thread, as without copies.
    pub fn thread_copies(mut self, on: bool) -> Self {
        self.thread_copies = on;
        self
    }

    /// Builds the store.
    pub fn build(self) -> MemoryStore {
        // Each entry weighs at least max_bytes / max_entries, so the byte bound also
        // bounds the count.
        let floor = (self.max_bytes / self.max_entries).max(1);
        let tags: Arc<Mutex<TagIndex>> = Arc::default();
        let max_entries = usize::try_from(self.max_entries).unwrap_or(usize::MAX);
        let entries = Entries::with_options(
            sharded(self.max_bytes, max_entries),
            Weight { floor },
            foldhash::fast::RandomState::default(),
            Evicted,
        );
        // Invalidated paths and URLs kept: as many as pages, at least 1,024.
        let capacity = usize::try_from(self.max_entries)
            .unwrap_or(usize::MAX)
            .max(1024);
        let scoped = || RwLock::new(Scoped::new(capacity));
        MemoryStore {
            entries: Arc::new(entries),
            versions: Arc::new(Versions {
                groups: RwLock::default(),
                prefixes: RwLock::default(),
                paths: scoped(),
                urls: scoped(),
                soft: Mutex::default(),
                soft_capacity: capacity,
            }),
            tags,
            generation: self.thread_copies.then(|| Arc::new(Generation::new())),
        }
    }
}

impl MemoryStore {
    /// [`Store::lookup`], answered at once, but for expiry: the entry may be past its
    /// timeout and grace, which the request path checks for itself (see
    /// `serve::usable`) with its own clock reading.
    pub(crate) fn lookup_now(&self, page: PageKey<'_>, now: Now) -> Lookup {
        match &self.generation {
            Some(generation) => replica::lookup(generation, &page, now, || self.read(page)),
            None => self.read(page),
        }
    }

    /// [`lookup_now`](Self::lookup_now), but a fresh copy of this thread's that `serves`
    /// takes comes alone (see `replica::lookup_or_copy`).
    pub(crate) fn lookup_or_copy(
        &self,
        page: PageKey<'_>,
        now: Now,
        serves: impl FnOnce(&Entry, &[u64]) -> bool,
    ) -> Answer {
        match &self.generation {
            Some(generation) => {
                replica::lookup_or_copy(generation, &page, now, serves, || self.read(page))
            }
            None => Answer::Lookup(self.read(page)),
        }
    }

    /// A lookup in the store itself.
    fn read(&self, page: PageKey<'_>) -> Lookup {
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
        let now = Now::read();
        let mut lookup = self.lookup_now(page, now);
        lookup.entry = lookup
            .entry
            .take()
            .and_then(|entry| self.unexpired(&lookup.hash, entry, now));
        Box::pin(std::future::ready(Ok(lookup)))
    }

    fn get<'a>(&'a self, hash: &'a str) -> BoxFuture<'a, Result<Option<Arc<Entry>>, Error>> {
        let entry = self
            .entries
            .get(hash)
            .and_then(|entry| self.unexpired(hash, entry, Now::read()));
        Box::pin(std::future::ready(Ok(entry)))
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
        let mut insert = Insert {
            inserting: Some(Arc::clone(&entry)),
            ..Insert::default()
        };
        self.entries
            .insert_with_lifecycle(hash.to_owned(), entry, &mut insert);
        let Insert {
            evicted, refused, ..
        } = insert;
        // An entry replaced (or one refused, which takes its predecessor out): a copy
        // of the one before must not stand. Evictions of other pages leave copies be.
        if evicted.iter().any(|h| h == hash) {
            self.moved();
        }
        if !evicted.is_empty() {
            // A replaced entry keeps its hash, whose tags were just recorded; one refused
            // (larger than its shard) is not held, nor the one it took out.
            let replaced = |h: &String| h == hash && !refused;
            let mut index = lock(&self.tags);
            for gone in evicted.iter().filter(|h| !replaced(h)) {
                index.forget(gone);
            }
        }
        // Said, so that the response does not claim a page stored that is not.
        let kept = if refused {
            Err(Error::TooLarge)
        } else {
            Ok(())
        };
        Box::pin(std::future::ready(kept))
    }

    fn remove<'a>(&'a self, hash: &'a str) -> BoxFuture<'a, Result<bool, Error>> {
        let removed = self.remove_now(hash);
        Box::pin(std::future::ready(Ok(removed)))
    }

    fn bump<'a>(&'a self, version: Version<'a>) -> BoxFuture<'a, Result<u64, Error>> {
        let v = self.versions.bump(version);
        self.moved();
        Box::pin(std::future::ready(Ok(v)))
    }

    fn version<'a>(&'a self, version: Version<'a>) -> BoxFuture<'a, Result<u64, Error>> {
        let v = self.versions.current(version);
        Box::pin(std::future::ready(Ok(v)))
    }

    fn bump_soft<'a>(&'a self, group: &'a str) -> BoxFuture<'a, Result<u64, Error>> {
        let v = self.versions.bump_soft(group);
        self.moved();
        Box::pin(std::future::ready(Ok(v)))
    }

    fn soft_lookup<'a>(
        &'a self,
        page: PageKey<'a>,
    ) -> BoxFuture<'a, Result<Option<Superseded>, Error>> {
        let now = Now::read();
        let current: Vec<u64> = page
            .groups
            .iter()
            .map(|g| self.versions.current(Version::Group(g)))
            .collect();
        let records: Vec<Option<SoftRecord>> = page
            .groups
            .iter()
            .map(|g| self.versions.soft_record(g, now.0))
            .collect();
        let found =
            page.superseded_versions(&current, &records)
                .and_then(|(versions, invalidated_ms)| {
                    let hash = page.hash_at(versions.iter().copied());
                    let entry = self
                        .entries
                        .get(&hash)
                        .and_then(|entry| self.unexpired(&hash, entry, now))?;
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
            if self.remove_now(&hash) {
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
    use futures_util::FutureExt as _;
    use http::StatusCode;
    use std::time::Duration;

    fn entry(body: &'static [u8], ttl: Duration) -> Arc<Entry> {
        Arc::new(Entry {
            status: StatusCode::OK,
            headers: vec![],
            body: Bytes::from_static(body),
            created_ms: unix_ms(std::time::SystemTime::now()),
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

    /// An invalidation made on another thread is seen by the next lookup on this one,
    /// for a group as for a URL: nothing this thread read before may stand for the
    /// versions (a guard for any per-thread shortcut on the hit path).
    #[tokio::test]
    async fn an_invalidation_on_another_thread_is_seen_here() {
        let store = MemoryStore::new();
        let groups = vec!["g".to_owned()];
        let scopes = [Version::Url("/a")];
        let page = PageKey {
            scopes: &scopes,
            ..page(&groups, "/a")
        };
        let l = store.lookup(page).await.unwrap();
        store
            .insert(&l.hash, entry(b"x", Duration::from_secs(60)), &[])
            .await
            .unwrap();
        // Found three times: the third is served from this thread's copy.
        for _ in 0..3 {
            let again = store.lookup(page).await.unwrap();
            assert_eq!(
                (again.hash.as_str(), again.scopes.as_slice()),
                (l.hash.as_str(), l.scopes.as_slice())
            );
            assert!(again.entry.is_some());
        }

        let bump_elsewhere = |version: Version<'static>| {
            std::thread::scope(|s| {
                s.spawn(|| store.bump(version).now_or_never().unwrap().unwrap());
            });
        };
        bump_elsewhere(Version::Url("/a"));
        let after_url = store.lookup(page).await.unwrap();
        assert_eq!(
            after_url.hash, l.hash,
            "a URL version is a scope, not part of the hash"
        );
        assert_ne!(after_url.scopes, l.scopes, "the URL's new version");

        bump_elsewhere(Version::Group("g"));
        let after_group = store.lookup(page).await.unwrap();
        assert_ne!(
            after_group.hash, l.hash,
            "the group's new version moves the hash"
        );
        assert!(after_group.entry.is_none());
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
        assert!(store.weighted_size() <= 50_000, "{}", store.weighted_size());
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

    #[tokio::test]
    async fn expired_entries_are_neither_found_nor_counted() {
        let store = MemoryStore::new();
        let aged = |body: &'static [u8], secs: u64, grace: u64| {
            let mut e = (*entry(body, Duration::from_secs(60))).clone();
            e.created_ms -= secs * 1000;
            e.grace = Duration::from_secs(grace);
            Arc::new(e)
        };
        let tagged = vec!["t".to_owned()];
        let old = get(&store, &[], "/old").await.hash;
        store
            .insert(&old, aged(b"old", 61, 0), &tagged)
            .await
            .unwrap();
        let graced = get(&store, &[], "/graced").await.hash;
        store
            .insert(&graced, aged(b"graced", 90, 60), &[])
            .await
            .unwrap();
        let live = get(&store, &[], "/live").await.hash;
        store
            .insert(&live, entry(b"live", Duration::from_secs(60)), &[])
            .await
            .unwrap();

        assert!(get(&store, &[], "/old").await.entry.is_none());
        assert!(store.get(&old).await.unwrap().is_none());
        // Past its timeout but within its grace: the request path serves it stale.
        assert!(get(&store, &[], "/graced").await.entry.is_some());
        assert!(get(&store, &[], "/live").await.entry.is_some());
        assert_eq!(store.entry_count(), 2);
        assert_eq!(store.tag_count(), 0, "the expired entry left the tag index");
    }

    #[tokio::test]
    async fn an_entry_larger_than_its_shard_is_not_kept_and_leaves_no_tag() {
        static HUGE: [u8; 2 << 20] = [1; 2 << 20];
        let store = MemoryStore::builder().max_bytes(1 << 20).build();
        let tagged = vec!["t".to_owned()];
        let hash = get(&store, &[], "/huge").await.hash;
        let refused = store
            .insert(&hash, entry(&HUGE, Duration::from_secs(60)), &tagged)
            .await;
        assert!(matches!(refused, Err(Error::TooLarge)), "{refused:?}");
        assert!(get(&store, &[], "/huge").await.entry.is_none());
        assert_eq!(store.entry_count(), 0);
        assert_eq!(store.tag_count(), 0);
    }

    /// The entry a lookup of `page` returns, and whether it is the store's own (not a
    /// thread's copy).
    fn served(store: &MemoryStore, page: PageKey<'_>) -> (Option<Arc<Entry>>, bool) {
        let found = store.lookup(page).now_or_never().unwrap().unwrap();
        let held = store.entries.get(&found.hash);
        let own = match (&found.entry, &held) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            _ => false,
        };
        (found.entry, own)
    }

    /// Stores `body` for `page` as the request path does: with the scope versions its
    /// lookup read.
    fn store_page(store: &MemoryStore, page: PageKey<'_>, body: &'static [u8], tags: &[String]) {
        let l = store.lookup(page).now_or_never().unwrap().unwrap();
        let mut e = Arc::unwrap_or_clone(entry(body, Duration::from_secs(60)));
        e.scopes = l.scopes;
        store
            .insert(&l.hash, Arc::new(e), tags)
            .now_or_never()
            .unwrap()
            .unwrap();
    }

    /// Whether a lookup of `page` finds an entry the request path may serve: one stored
    /// at the scope versions the lookup read.
    fn servable(store: &MemoryStore, page: PageKey<'_>) -> bool {
        let l = store.lookup(page).now_or_never().unwrap().unwrap();
        l.entry.is_some_and(|e| e.scopes == l.scopes)
    }

    #[test]
    fn a_page_found_twice_is_then_served_from_the_threads_own_copy() {
        let store = MemoryStore::new();
        let groups = vec!["g".to_owned()];
        let page = page(&groups, "/a");
        store_page(&store, page, b"body", &[]);
        assert!(served(&store, page).1, "found once: the store's entry");
        assert!(
            served(&store, page).1,
            "found twice: the store's entry, copied"
        );
        let (copy, own) = served(&store, page);
        assert!(!own, "the third lookup is served from the copy");
        let copy = copy.unwrap();
        let held = store
            .entries
            .get(&page.hash_at([version_of(&store, "g")]))
            .unwrap();
        assert_eq!(copy.body, held.body);
        assert_ne!(
            copy.body.as_ptr(),
            held.body.as_ptr(),
            "a copy shares no bytes"
        );
        assert_eq!(copy.created_ms, held.created_ms);
        assert!(replica::weight_held() >= copy.body.len());

        // On another thread, the store's entry again until that thread copies it too.
        std::thread::scope(|s| {
            s.spawn(|| assert!(served(&store, page).1));
        });
    }

    fn version_of(store: &MemoryStore, group: &str) -> u64 {
        store
            .version(Version::Group(group))
            .now_or_never()
            .unwrap()
            .unwrap()
    }

    #[test]
    fn every_change_a_copy_could_miss_sends_the_next_lookup_to_the_store() {
        let groups = vec!["g".to_owned()];
        let scopes = [Version::Path("/a"), Version::Url("/a?x=1")];
        let page = PageKey {
            scopes: &scopes,
            ..page(&groups, "/a?x=1")
        };
        let tags = vec!["t".to_owned()];
        type Change = fn(&MemoryStore, PageKey<'_>);
        let changes: [(&str, Change); 6] = [
            ("group", |s, _| {
                s.bump(Version::Group("g")).now_or_never().unwrap().unwrap();
            }),
            ("path", |s, _| {
                s.bump(Version::Path("/a")).now_or_never().unwrap().unwrap();
            }),
            ("url", |s, _| {
                s.bump(Version::Url("/a?x=1"))
                    .now_or_never()
                    .unwrap()
                    .unwrap();
            }),
            ("soft group", |s, _| {
                s.bump_soft("g").now_or_never().unwrap().unwrap();
            }),
            ("tag", |s, _| {
                s.delete_tag("t").now_or_never().unwrap().unwrap();
            }),
            ("removal", |s, p| {
                let hash = s.lookup(p).now_or_never().unwrap().unwrap().hash;
                assert!(s.remove(&hash).now_or_never().unwrap().unwrap());
            }),
        ];
        for (what, change) in changes {
            let store = MemoryStore::new();
            store_page(&store, page, b"old", &tags);
            for _ in 0..3 {
                served(&store, page);
            }
            assert!(!served(&store, page).1, "{what}: served from the copy");
            assert!(servable(&store, page), "{what}: the copy may be served");
            change(&store, page);
            assert!(
                !servable(&store, page),
                "{what}: nothing to serve after the change"
            );
        }

        // A replacement: the next lookup finds the new entry, not the copy of the old.
        let store = MemoryStore::new();
        store_page(&store, page, b"old", &[]);
        for _ in 0..3 {
            served(&store, page);
        }
        store_page(&store, page, b"new", &[]);
        assert_eq!(served(&store, page).0.unwrap().body, "new");
    }

    #[test]
    fn heavy_pages_and_stores_without_copies_are_never_copied() {
        static HEAVY: [u8; replica::MAX_WEIGHT + 1] = [b'x'; replica::MAX_WEIGHT + 1];
        let groups = vec![];
        let store = MemoryStore::new();
        store_page(&store, page(&groups, "/heavy"), &HEAVY, &[]);
        let off = MemoryStore::builder().thread_copies(false).build();
        store_page(&off, page(&groups, "/light"), b"light", &[]);
        for _ in 0..4 {
            assert!(served(&store, page(&groups, "/heavy")).1);
            assert!(served(&off, page(&groups, "/light")).1);
        }
    }

    #[test]
    fn pages_found_once_are_not_copied() {
        let store = MemoryStore::new();
        let keys: Vec<String> = (0..200).map(|i| format!("/once/{i}")).collect();
        std::thread::scope(|s| {
            s.spawn(|| {
                let groups = vec![];
                for key in &keys {
                    store_page(&store, page(&groups, key), b"once", &[]);
                    assert!(served(&store, page(&groups, key)).1);
                }
                assert_eq!(replica::weight_held(), 0);
            });
        });
    }

    #[test]
    fn a_threads_copies_stay_within_their_budget() {
        static PAGE: [u8; 60 * 1024] = [b'p'; 60 * 1024];
        let store = MemoryStore::builder().max_bytes(256 * 1024 * 1024).build();
        let keys: Vec<String> = (0..200).map(|i| format!("/p/{i}")).collect();
        std::thread::scope(|s| {
            s.spawn(|| {
                let groups = vec![];
                for key in &keys {
                    store_page(&store, page(&groups, key), &PAGE, &[]);
                    for _ in 0..3 {
                        served(&store, page(&groups, key));
                    }
                }
                let held = replica::weight_held();
                assert!(
                    held > 0 && held <= replica::BUDGET,
                    "{held} bytes of copies"
                );
            });
        });
    }
}
