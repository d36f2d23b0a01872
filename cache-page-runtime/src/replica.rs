//! Each thread's own copies of the pages it serves most from a `MemoryStore`, or from
//! the pages a `RedisStore` keeps in process.
//!
//! Two cores serving one page from the store share its `Arc<Entry>`, the `Bytes` of its
//! body and headers, a shard's lock and the version maps' locks: every hit writes
//! reference counts and lock words that the other core wrote a moment before, and each
//! such write waits for its cache line to come over from the other core. A page served
//! from the thread's own copy writes no line that another core writes. The copy also
//! remembers the hash and the versions it was found at, so a hit on it neither reads
//! the versions nor hashes the key.
//!
//! A `MemoryStore`'s copy stands while its store's [`Generation`] is the one it was
//! made at. The store moves the generation after every change that could make a copy
//! wrong (a version bumped, an entry removed or replaced), so a lookup that starts
//! after an invalidation returned reads the store again. An entry evicted for room does
//! not move it: the copy is still that page at those versions. A copy is served only while
//! fresh; a stale one sends the lookup to the store, where a refreshed entry may be.
//!
//! A `RedisStore`'s copies are numbered by its tracking connection, and stand while
//! that connection's epoch, which every invalidation message moves, is the one they
//! were made at; a hit on one still waits for the connection's barrier, and checks
//! the epoch again after it (see `RedisStore::tracked_lookup`).
//!
//! A page is copied the second time a thread finds it in the store with nothing
//! changed in between, so pages asked for once are not copied, and only if it weighs
//! at most [`MAX_WEIGHT`]; the copies of one thread weigh at most [`BUDGET`] in all.

use std::{
    cell::RefCell,
    hash::BuildHasher as _,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};

use http::{HeaderName, HeaderValue};

use crate::{
    Entry, VaryIndex,
    entry::Now,
    store::{Lookup, PageKey},
};

/// Slots per thread, one page each.
const SLOTS: usize = 64;

/// The heaviest page copied (its [`Entry::weight`] and hash).
pub(crate) const MAX_WEIGHT: usize = 64 * 1024;

/// The most a thread's copies weigh in all.
pub(crate) const BUDGET: usize = 1024 * 1024;

/// A store's generation: moved after every change that could make a copy wrong.
///
/// Read on every hit and written only on invalidations, so it has a cache line of its
/// own: a line that no hit writes stays in every core's cache.
#[derive(Debug)]
#[repr(align(128))]
pub(crate) struct Generation {
    /// Which store (see [`store_number`]).
    store: u64,
    value: AtomicU64,
}

/// A number for a store (or a store's connection) whose pages threads copy: never
/// reused, so that a store made where a dropped one was cannot take the dropped one's
/// copies for its own.
pub(crate) fn store_number() -> u64 {
    static STORES: AtomicU64 = AtomicU64::new(0);
    STORES.fetch_add(1, Ordering::Relaxed)
}

impl Generation {
    pub(crate) fn new() -> Self {
        Generation {
            store: store_number(),
            value: AtomicU64::new(0),
        }
    }

    /// The generation now: read before anything the copy is made from.
    pub(crate) fn read(&self) -> u64 {
        self.value.load(Ordering::Acquire)
    }

    /// Moves the generation: called after the change, so that a thread that sees the
    /// new generation sees the change too.
    pub(crate) fn bump(&self) {
        self.value.fetch_add(1, Ordering::Release);
    }
}

/// A thread's copy of one page of a store: what the page was looked up by, what the
/// lookup found, and the copy of its entry.
struct Slot {
    store: u64,
    generation: u64,
    prefix: String,
    groups: Vec<String>,
    key: String,
    caller: Option<String>,
    scopes: Vec<(usize, String)>,
    hash: String,
    versions: Vec<u64>,
    copy: Arc<Entry>,
    /// The copy's weight against [`BUDGET`].
    weight: usize,
}

impl Slot {
    fn new(
        store: u64,
        at: u64,
        page: &PageKey<'_>,
        lookup: &Lookup,
        copy: Arc<Entry>,
        weight: usize,
    ) -> Self {
        Slot {
            store,
            generation: at,
            prefix: page.prefix.to_owned(),
            groups: page.groups.to_vec(),
            key: page.key.to_owned(),
            caller: page.caller.map(str::to_owned),
            scopes: page
                .scopes
                .iter()
                .map(|v| (v.kind_index(), v.name().to_owned()))
                .collect(),
            hash: lookup.hash.clone(),
            versions: lookup.scopes.clone(),
            copy,
            weight,
        }
    }

    /// The lookup that found this copy, with the copy as its entry.
    fn lookup(&self) -> Lookup {
        Lookup {
            hash: self.hash.clone(),
            entry: Some(Arc::clone(&self.copy)),
            scopes: self.versions.clone(),
        }
    }

    /// Whether the slot is for this page of this store, at generation `at`.
    fn is_for(&self, store: u64, at: u64, page: &PageKey<'_>) -> bool {
        self.store == store
            && self.generation == at
            && self.key == page.key
            && self.prefix == page.prefix
            && self.caller.as_deref() == page.caller
            && self.groups == page.groups
            && self.scopes.len() == page.scopes.len()
            && self
                .scopes
                .iter()
                .zip(page.scopes)
                .all(|((k, name), v)| *k == v.kind_index() && name == v.name())
    }
}

/// A page found once: its store, the generation then, and a fingerprint of its key.
/// Nothing is allocated for it; a second sighting that matches all three (at the same
/// slot) makes the copy. A fingerprint may match another page of the same slot: that
/// page is then copied one sighting early, which costs a copy, never a wrong page.
type Sighting = (u64, u64, u64);

#[derive(Default)]
struct Table {
    slots: Vec<Option<Slot>>,
    sightings: Vec<Option<Sighting>>,
    /// The weight of every copy held.
    weight: usize,
}

thread_local! {
    static TABLE: RefCell<Table> = RefCell::default();
}

/// A fingerprint of a page's key, and the slot the page goes to.
#[derive(Clone, Copy)]
struct Place {
    print: u64,
    index: usize,
}

impl Place {
    fn of(page: &PageKey<'_>) -> Self {
        let print = foldhash::fast::FixedState::default().hash_one(page.key);
        Place {
            print,
            index: print as usize % SLOTS,
        }
    }
}

/// Runs `f` on this thread's table, unless the thread is being torn down (or, which
/// cannot happen, the table is in use): then the store is read as if there were none.
fn with_table<T>(f: impl FnOnce(&mut Table) -> Option<T>) -> Option<T> {
    TABLE
        .try_with(|table| {
            let mut table = table.try_borrow_mut().ok()?;
            if table.slots.is_empty() {
                table.slots.resize_with(SLOTS, || None);
                table.sightings.resize(SLOTS, None);
            }
            f(&mut table)
        })
        .ok()
        .flatten()
}

/// A lookup of `page` in a store whose generation is `generation`: this thread's copy
/// of the page if it has one that is current and fresh at `now`, or else what `read`
/// finds in the store, which the table is then told of (see [`offer`]).
pub(crate) fn lookup(
    generation: &Generation,
    page: &PageKey<'_>,
    now: Now,
    read: impl FnOnce() -> Lookup,
) -> Lookup {
    // Read before the store: a change made after this is seen as a move.
    let at = generation.read();
    let place = Place::of(page);
    if let Some(copy) = find(generation.store, at, page, place, now) {
        return copy;
    }
    let lookup = read();
    offer(generation.store, at, page, place, &lookup, now);
    lookup
}

/// What [`lookup_or_copy`] found.
pub(crate) enum Answer {
    /// This thread's copy of the page, alone.
    Copy(Arc<Entry>),
    /// A lookup, as [`lookup`] makes it.
    Lookup(Lookup),
}

/// [`lookup`], but a current copy, fresh at `now`, that `serves` takes (given the copy
/// and the versions it was found at) comes alone: a hit on it needs neither the page's
/// hash nor its versions, which a [`Lookup`] would clone.
pub(crate) fn lookup_or_copy(
    generation: &Generation,
    page: &PageKey<'_>,
    now: Now,
    serves: impl FnOnce(&Entry, &[u64]) -> bool,
    read: impl FnOnce() -> Lookup,
) -> Answer {
    let at = generation.read();
    let place = Place::of(page);
    let copied = with_table(|table| {
        let slot = current(table, generation.store, at, page, place, now)?;
        Some(if serves(&slot.copy, &slot.versions) {
            Answer::Copy(Arc::clone(&slot.copy))
        } else {
            Answer::Lookup(slot.lookup())
        })
    });
    copied.unwrap_or_else(|| {
        let lookup = read();
        offer(generation.store, at, page, place, &lookup, now);
        Answer::Lookup(lookup)
    })
}

/// This thread's copy of `page` in the store numbered `store` (see [`store_number`]),
/// as a lookup, if it has one made at `at` that is fresh at `now`: for a store that
/// keeps its own generation, and checks it again after waiting (the `RedisStore`,
/// whose tracking connection moves its epoch with every invalidation).
#[cfg(feature = "redis")]
pub(crate) fn copy_at(store: u64, at: u64, page: &PageKey<'_>, now: Now) -> Option<Lookup> {
    find(store, at, page, Place::of(page), now)
}

/// Tells this thread's table what a lookup of `page` in the store numbered `store`
/// found at generation `at`, read before anything the lookup found (see [`offer`]).
#[cfg(feature = "redis")]
pub(crate) fn offer_at(store: u64, at: u64, page: &PageKey<'_>, lookup: &Lookup, now: Now) {
    offer(store, at, page, Place::of(page), lookup, now);
}

/// This thread's copy of `page`, as a lookup, if it has one made at generation `at`
/// that is fresh at `now`.
fn find(store: u64, at: u64, page: &PageKey<'_>, place: Place, now: Now) -> Option<Lookup> {
    with_table(|table| current(table, store, at, page, place, now).map(Slot::lookup))
}

/// The slot of `table` at `place` if it holds a copy of `page` made at `at` that is
/// fresh at `now`.
fn current<'t>(
    table: &'t Table,
    store: u64,
    at: u64,
    page: &PageKey<'_>,
    place: Place,
    now: Now,
) -> Option<&'t Slot> {
    let slot = table.slots[place.index].as_ref()?;
    (slot.is_for(store, at, page) && !slot.copy.is_stale(now)).then_some(slot)
}

/// Tells the thread's table what a lookup of `page` at generation `at` found in the
/// store: the first sighting is remembered, the second makes a copy (or replaces a
/// stale one), if the entry is fresh at `now` and light enough.
fn offer(store: u64, at: u64, page: &PageKey<'_>, place: Place, lookup: &Lookup, now: Now) {
    let Some(entry) = &lookup.entry else { return };
    with_table(|table| {
        let index = place.index;
        let sighting = (store, at, place.print);
        let copied = table.slots[index]
            .as_ref()
            .is_some_and(|s| s.is_for(store, at, page));
        if !copied && table.sightings[index] != Some(sighting) {
            table.sightings[index] = Some(sighting);
            return None;
        }
        let weight = lookup.hash.len() + entry.weight();
        let held = table.slots[index].as_ref().map_or(0, |s| s.weight);
        if entry.is_stale(now) || weight > MAX_WEIGHT || table.weight - held + weight > BUDGET {
            return None;
        }
        let copy = Arc::new(copy_of(entry));
        table.slots[index] = Some(Slot::new(store, at, page, lookup, copy, weight));
        table.sightings[index] = None;
        table.weight = table.weight - held + weight;
        Some(())
    });
}

/// A deep copy of `entry`: nothing in it is shared with the original.
fn copy_of(entry: &Entry) -> Entry {
    let name = |n: &HeaderName| {
        HeaderName::from_bytes(n.as_str().as_bytes()).unwrap_or_else(|_| n.clone())
    };
    Entry {
        status: entry.status,
        headers: entry
            .headers
            .iter()
            .map(|(n, v)| {
                let mut value = HeaderValue::from_bytes(v.as_bytes()).unwrap_or_else(|_| v.clone());
                value.set_sensitive(v.is_sensitive());
                (name(n), value)
            })
            .collect(),
        body: bytes::Bytes::copy_from_slice(&entry.body),
        created_ms: entry.created_ms,
        ttl: entry.ttl,
        grace: entry.grace,
        origin: entry.origin.clone(),
        scopes: entry.scopes.clone(),
        vary: entry.vary.as_ref().map(|index| VaryIndex {
            names: index.names.iter().map(name).collect(),
            nonce: index.nonce,
        }),
    }
}

/// The weight of this thread's copies, for tests.
#[cfg(test)]
pub(crate) fn weight_held() -> usize {
    with_table(|table| Some(table.weight)).unwrap_or(0)
}
