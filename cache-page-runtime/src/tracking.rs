//! A hit in one `GET`, or in a shared `PING`: the versions a page's key is made of,
//! and the pages hit, are kept in process, on a connection Redis promises to tell when
//! any of them changes (client-side tracking, RESP3). A kept page is served once a
//! `PING` sent after the hit began is answered (see [`barrier`](crate::barrier)): the
//! same order as below holds for it.
//!
//! Why this is as strict as reading the versions with every hit: Redis writes an
//! invalidation message into a tracking connection's stream at the moment the key
//! changes. A `GET` sent after the change is answered after that message, on the same
//! connection, and redis-rs hands the message to us, in the connection's read loop,
//! before it hands over the answer. So a hit that finds no invalidation of its
//! versions when its answer arrives used versions that were current when Redis ran
//! its `GET`: no later than the request. An invalidation that returned before a request
//! began, in any process, is seen by that request.
//!
//! Versions are learnt after a hit that had to read them (in the background, one more
//! read on the tracking connection): a page requested once, such as a miss on a URL
//! never seen again, leaves nothing for Redis to track or to tell.
//!
//! The connection is a plain multiplexed one made by this module (redis-rs's
//! `ConnectionManager` forwards messages through a task of its own, which would lose
//! that order). When it breaks, what it learnt is dropped with it, hits go back to
//! reading versions with the entry, and a new connection is made in the background.

use std::{
    cell::RefCell,
    collections::HashMap,
    sync::{
        Arc, Mutex, RwLock, Weak,
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use redis::{
    AsyncConnectionConfig, Client, ConnectionInfo, ProtocolVersion, PushInfo, PushKind, Value,
    aio::MultiplexedConnection,
};

use crate::{
    Entry, Error, PageKey, Version,
    barrier::Barrier,
    memory::{Weight, sharded},
    redis_store::{keys, parse_version},
};

/// Most versions kept per connection; past it they are all dropped and learnt again.
pub(crate) const REMEMBERED_VERSIONS: usize = 200_000;

/// Trackings whose link each thread remembers.
const LINKS_KEPT: usize = 4;

/// A link a thread remembers, and the number of its tracking.
type LinkOf = (u64, Weak<Link>);

thread_local! {
    /// Each thread's link of a few trackings, by the tracking's number: a hit upgrades
    /// it, where reading the tracking's lock would write the lock's word, which the
    /// other cores' hits write too. Weak: a dropped store's connection is not held.
    static LINKS: RefCell<[Option<LinkOf>; LINKS_KEPT]> =
        RefCell::new(std::array::from_fn(|_| None));
}

/// How long after a failed connection attempt the next one may start.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// Where the tracking connection of a store is, and how to make a new one.
pub(crate) struct Tracking {
    client: Client,
    timeouts: Timeouts,
    namespace: Arc<str>,
    link: RwLock<Option<Arc<Link>>>,
    /// The tracking's number, by which each thread finds its link (see [`LINKS`]).
    number: u64,
    attempt: Mutex<Attempt>,
    /// Set when the server refused tracking: no more attempts.
    refused: AtomicBool,
    /// How many connections were made, for tests and diagnostics.
    connections: AtomicU64,
    /// Version reads in flight to learn pages (at most [`LEARNING_AT_ONCE`]).
    learning: AtomicUsize,
    /// Most bytes of pages each connection keeps in process (0: none).
    near_cache_bytes: u64,
    /// The store's count of round trips, which the barriers' `PING`s add to.
    round_trips: Arc<AtomicU64>,
}

/// How long the tracking connection may take to connect, and to answer a command; and
/// how long before a hit the `PING` that confirms it may have been sent.
#[derive(Clone, Copy)]
pub(crate) struct Timeouts {
    pub(crate) connect: Duration,
    pub(crate) command: Duration,
    /// See [`RedisStoreBuilder::invalidation_lag`](crate::RedisStoreBuilder::invalidation_lag).
    pub(crate) lag: Duration,
}

#[derive(Default)]
struct Attempt {
    running: bool,
    not_before: Option<Instant>,
}

/// One tracking connection, the versions learnt on it, the pages kept, and the
/// barrier that confirms a kept page.
pub(crate) struct Link {
    conn: MultiplexedConnection,
    known: Arc<Known>,
    barrier: Arc<Barrier>,
    /// The connection's number among the stores whose pages threads copy: a thread's
    /// copy of a page kept on it stands while the epoch is the one it was made at.
    number: u64,
}

/// Pages kept in process, by hash (at the versions of their groups).
///
/// A quick_cache cache (CLOCK-Pro eviction, sharded locks), not moka: reading a page
/// here is on every near-cache hit, and quick_cache's read is a shard's read lock and
/// a probe, where moka's also reads the clock and queues the read for its eviction
/// policy. Kept pages need neither a TTL (a hit checks the entry's age) nor eviction
/// listeners.
type Pages = quick_cache::sync::Cache<Box<str>, Arc<Entry>, Weight, foldhash::fast::RandomState>;

/// An empty near cache of at most `bytes`.
fn pages(bytes: u64) -> Pages {
    // The estimate sizes the cache's memory of recently evicted keys, not the pages.
    let estimated_pages = usize::try_from(bytes / 4096).unwrap_or(usize::MAX).max(64);
    Pages::with_options(
        sharded(bytes, estimated_pages),
        Weight { floor: 0 },
        foldhash::fast::RandomState::default(),
        Default::default(),
    )
}

/// What was learnt on one connection, emptied by Redis's invalidation messages.
#[derive(Default)]
struct Known {
    namespace: Arc<str>,
    /// One map per kind of version (group, path, URL, prefix), by name.
    versions: RwLock<[HashMap<Box<str>, u64>; 4]>,
    /// Entries read at known versions, whose keys Redis tracks too (`None`: the store
    /// keeps none).
    pages: Option<Pages>,
    /// Moves on with every invalidation of a version or a kept page (or of all of
    /// them): a hit or a read that saw it move while it waited for Redis checks again.
    epoch: AtomicU64,
    /// The connection broke: nothing learnt on it can be trusted any more.
    closed: AtomicBool,
}

/// A key Redis told us of.
#[derive(Debug, PartialEq)]
enum Tracked<'k> {
    /// A version: the index of its kind's map, and its name.
    Version(usize, &'k str),
    /// A page, by hash.
    Page(&'k str),
}

/// The map of a kind as it is written in keys (`group`, `path`…; see
/// [`Version::kind`]).
fn slot_of_kind(kind: &[u8]) -> Option<usize> {
    [
        Version::Group(""),
        Version::Path(""),
        Version::Url(""),
        Version::Prefix(""),
    ]
    .into_iter()
    .find(|v| v.kind().as_bytes() == kind)
    .map(|v| v.kind_index())
}

impl Known {
    fn on_push(&self, push: PushInfo) {
        match push.kind {
            PushKind::Invalidate => match push.data.first() {
                Some(Value::Array(keys)) => {
                    // Everything under the write lock, the epoch moved last: a hit
                    // that found a page (or versions) read the epoch before, and a
                    // page being kept is kept before all this or not at all.
                    let mut versions = self.versions.write().unwrap_or_else(|e| e.into_inner());
                    let mut any = false;
                    for key in keys {
                        let Value::BulkString(key) = key else {
                            continue;
                        };
                        // Even a version or page not known moves the epoch: it may be
                        // being read, and what its reader read may be older.
                        match self.tracked(key) {
                            Some(Tracked::Version(slot, name)) => {
                                versions[slot].remove(name);
                                any = true;
                            }
                            Some(Tracked::Page(hash)) => {
                                if let Some(kept) = &self.pages {
                                    kept.remove(hash);
                                }
                                any = true;
                            }
                            None => {}
                        }
                    }
                    if any {
                        self.epoch.fetch_add(1, Ordering::SeqCst);
                    }
                }
                // A null list: the server was flushed, every key changed.
                _ => self.forget_all(),
            },
            PushKind::Disconnection => {
                self.closed.store(true, Ordering::SeqCst);
                self.forget_all();
            }
            _ => {}
        }
    }

    fn forget_all(&self) {
        let mut versions = self.versions.write().unwrap_or_else(|e| e.into_inner());
        for map in versions.iter_mut() {
            map.clear();
        }
        if let Some(kept) = &self.pages {
            kept.clear();
        }
        self.epoch.fetch_add(1, Ordering::SeqCst);
    }

    /// The version or page a key of this namespace, `<ns>:<kind>:<name>`, holds.
    fn tracked<'k>(&self, key: &'k [u8]) -> Option<Tracked<'k>> {
        let rest = key
            .strip_prefix(self.namespace.as_bytes())?
            .strip_prefix(b":")?;
        let colon = rest.iter().position(|&b| b == b':')?;
        let name = std::str::from_utf8(&rest[colon + 1..]).ok()?;
        match &rest[..colon] {
            b"page" => Some(Tracked::Page(name)),
            kind => Some(Tracked::Version(slot_of_kind(kind)?, name)),
        }
    }

    /// The versions of `page`, groups then scopes, if every one is known.
    fn versions_of(&self, page: PageKey<'_>) -> Option<Vec<u64>> {
        let maps = self.versions.read().unwrap_or_else(|e| e.into_inner());
        let mut out = Vec::with_capacity(page.groups.len() + page.scopes.len());
        for group in page.groups {
            out.push(*maps[0].get(group.as_str())?);
        }
        for scope in page.scopes {
            out.push(*maps[scope.kind_index()].get(scope.name())?);
        }
        Some(out)
    }
}

impl Tracking {
    /// Tracking for the store whose server `info` names, made lazily: nothing
    /// connects until a hit asks.
    pub(crate) fn new(
        info: &ConnectionInfo,
        namespace: Arc<str>,
        timeouts: Timeouts,
        near_cache_bytes: u64,
        round_trips: Arc<AtomicU64>,
    ) -> Self {
        let settings = info
            .redis_settings()
            .clone()
            .set_protocol(ProtocolVersion::RESP3);
        let client = Client::open(info.clone().set_redis_settings(settings))
            .expect("a connection info that opened a client opens another");
        Tracking {
            client,
            timeouts,
            namespace,
            link: RwLock::new(None),
            number: crate::replica::store_number(),
            attempt: Mutex::new(Attempt::default()),
            refused: AtomicBool::new(false),
            connections: AtomicU64::new(0),
            learning: AtomicUsize::new(0),
            near_cache_bytes,
            round_trips,
        }
    }

    /// Most bytes of pages each connection keeps.
    pub(crate) fn near_cache_bytes(&self) -> u64 {
        self.near_cache_bytes
    }

    /// See [`RedisStoreBuilder::invalidation_lag`](crate::RedisStoreBuilder::invalidation_lag).
    pub(crate) fn invalidation_lag(&self) -> Duration {
        self.timeouts.lag
    }

    /// How many tracking connections were made so far.
    pub(crate) fn connections(&self) -> u64 {
        self.connections.load(Ordering::Relaxed)
    }

    /// The live tracking connection, if there is one; otherwise starts making one in
    /// the background (at most one attempt at a time, one a second after failures).
    pub(crate) fn link(self: &Arc<Self>) -> Option<Arc<Link>> {
        let slot = (self.number % LINKS_KEPT as u64) as usize;
        let kept = LINKS
            .try_with(|links| {
                let links = links.try_borrow().ok()?;
                match &links[slot] {
                    Some((number, link)) if *number == self.number => link.upgrade(),
                    _ => None,
                }
            })
            .ok()
            .flatten();
        // A link is replaced only once it is closed: an open one is the current one.
        if let Some(link) = kept
            && !link.known.closed.load(Ordering::Acquire)
        {
            return Some(link);
        }
        if let Some(link) = &*self.link.read().unwrap_or_else(|e| e.into_inner())
            && !link.known.closed.load(Ordering::Acquire)
        {
            let _ = LINKS.try_with(|links| {
                if let Ok(mut links) = links.try_borrow_mut() {
                    links[slot] = Some((self.number, Arc::downgrade(link)));
                }
            });
            return Some(Arc::clone(link));
        }
        self.connect_in_background();
        None
    }

    fn connect_in_background(self: &Arc<Self>) {
        if self.refused.load(Ordering::Relaxed) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        {
            let mut attempt = self.attempt.lock().unwrap_or_else(|e| e.into_inner());
            if attempt.running || attempt.not_before.is_some_and(|t| Instant::now() < t) {
                return;
            }
            attempt.running = true;
        }
        let this: Weak<Self> = Arc::downgrade(self);
        runtime.spawn(async move {
            let Some(tracking) = this.upgrade() else {
                return;
            };
            let made = tracking.connect().await;
            let mut attempt = tracking.attempt.lock().unwrap_or_else(|e| e.into_inner());
            attempt.running = false;
            match made {
                Ok(link) => {
                    attempt.not_before = None;
                    tracking.connections.fetch_add(1, Ordering::Relaxed);
                    *tracking.link.write().unwrap_or_else(|e| e.into_inner()) = Some(link);
                }
                Err(err) => {
                    attempt.not_before = Some(Instant::now() + RETRY_AFTER);
                    if let Error::Redis(e) = &err
                        && refuses_tracking(e)
                    {
                        tracing::warn!(
                            error = %e,
                            "Redis refused client-side tracking: every hit reads the versions with the entry"
                        );
                        tracking.refused.store(true, Ordering::Relaxed);
                    }
                }
            }
        });
    }

    async fn connect(&self) -> Result<Arc<Link>, Error> {
        let pages = (self.near_cache_bytes > 0).then(|| pages(self.near_cache_bytes));
        let known = Arc::new(Known {
            namespace: Arc::clone(&self.namespace),
            pages,
            ..Known::default()
        });
        let pushed = Arc::clone(&known);
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.timeouts.connect))
            .set_response_timeout(Some(self.timeouts.command))
            .set_push_sender(move |push: PushInfo| {
                pushed.on_push(push);
                Ok::<(), std::convert::Infallible>(())
            });
        let mut conn = self
            .client
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        // Only reads sent just after `CLIENT CACHING YES` are tracked: the version
        // reads, and the entries read to be kept, not the others.
        let () = redis::cmd("CLIENT")
            .arg("TRACKING")
            .arg("ON")
            .arg("OPTIN")
            .query_async(&mut conn)
            .await?;
        let barrier = Barrier::start(
            conn.clone(),
            self.timeouts.command,
            self.timeouts.lag,
            Arc::clone(&self.round_trips),
        );
        Ok(Arc::new(Link {
            conn,
            known,
            barrier,
            number: crate::replica::store_number(),
        }))
    }
}

/// Whether `err` says this server will not do tracking (too old for RESP3, the command
/// unknown or not allowed), rather than that it could not be reached now.
fn refuses_tracking(err: &redis::RedisError) -> bool {
    use redis::{ErrorKind, ServerErrorKind};
    match err.kind() {
        ErrorKind::RESP3NotSupported => true,
        ErrorKind::Server(kind) => matches!(
            kind,
            ServerErrorKind::ResponseError | ServerErrorKind::NoPerm
        ),
        _ => false,
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        self.barrier.close();
    }
}

impl Link {
    /// Marks the connection broken: a new one is made on the next hit.
    pub(crate) fn close(&self) {
        self.known.closed.store(true, Ordering::SeqCst);
        self.barrier.close();
    }

    /// Whether this connection keeps pages: entries read on it are then read so that
    /// Redis tracks them, and given to [`keep`](Self::keep).
    pub(crate) fn keeps_pages(&self) -> bool {
        self.known.pages.is_some()
    }

    /// The page kept under `hash`, if any. Serve it only after
    /// [`pass`](Self::pass) and [`still_kept`](Self::still_kept).
    pub(crate) fn kept(&self, hash: &str) -> Option<Arc<Entry>> {
        self.known.pages.as_ref()?.get(hash)
    }

    /// Keeps `entry`, read under `hash` by a tracked read sent at `epoch`, unless an
    /// invalidation came since (it may be of this page, and newer than what was read).
    pub(crate) fn keep(&self, hash: &str, entry: &Arc<Entry>, epoch: u64) {
        let Some(pages) = &self.known.pages else {
            return;
        };
        // Under the lock an invalidation holds to drop pages and move the epoch: one
        // that came after the read drops this page after it is kept.
        let _versions = self
            .known
            .versions
            .read()
            .unwrap_or_else(|e| e.into_inner());
        if self.epoch() == epoch && !self.known.closed.load(Ordering::SeqCst) {
            pages.insert(hash.into(), Arc::clone(entry));
        }
    }

    /// Returns once every invalidation that returned before this call began (or, with
    /// an invalidation lag, that long before it) has reached this connection (one
    /// `PING`, shared by the hits waiting at once).
    pub(crate) async fn pass(&self) -> Result<(), Error> {
        self.barrier.pass().await
    }

    /// Returns once every invalidation that returned before this call began has
    /// reached this connection, whatever the lag: after this process's own
    /// invalidation, so that it reads its own writes.
    pub(crate) async fn confirm(&self) -> Result<(), Error> {
        self.barrier.confirm().await
    }

    /// Whether `entry`, kept under `hash` and found with `versions` of `page` at
    /// `epoch` (read before the page), is still the page to serve after
    /// [`pass`](Self::pass). An invalidation drops pages before it moves the epoch, so
    /// an epoch that did not move means the page was not dropped since.
    pub(crate) fn still_kept(
        &self,
        page: PageKey<'_>,
        versions: &[u64],
        epoch: u64,
        hash: &str,
        entry: &Arc<Entry>,
    ) -> bool {
        self.still(page, versions, epoch)
            && (self.epoch() == epoch || self.kept(hash).is_some_and(|e| Arc::ptr_eq(&e, entry)))
    }

    /// A clone of the connection, for a command whose answer needs no tracking.
    pub(crate) fn connection(&self) -> MultiplexedConnection {
        self.conn.clone()
    }

    /// The versions of `page` (groups, then scopes) if all of them are known, and the
    /// epoch to pass to [`still`](Self::still) once the entry read at them is back.
    pub(crate) fn versions(&self, page: PageKey<'_>) -> Option<(Vec<u64>, u64)> {
        let epoch = self.epoch();
        Some((self.known.versions_of(page)?, epoch))
    }

    /// The connection's number, for the threads' copies of its pages.
    pub(crate) fn number(&self) -> u64 {
        self.number
    }

    /// The epoch now: read before a thread's copy of a page, and again after
    /// [`pass`](Self::pass) with [`still_at`](Self::still_at).
    pub(crate) fn epoch(&self) -> u64 {
        self.known.epoch.load(Ordering::SeqCst)
    }

    /// Whether no invalidation reached this connection since `epoch` was read, and
    /// the connection did not break: everything learnt at `epoch` still holds.
    pub(crate) fn still_at(&self, epoch: u64) -> bool {
        !self.known.closed.load(Ordering::SeqCst) && self.epoch() == epoch
    }

    /// Whether `versions` of `page`, known at `epoch`, are still its versions: no
    /// invalidation of them reached this connection since.
    pub(crate) fn still(&self, page: PageKey<'_>, versions: &[u64], epoch: u64) -> bool {
        if self.known.closed.load(Ordering::SeqCst) {
            return false;
        }
        self.epoch() == epoch || self.known.versions_of(page).as_deref() == Some(versions)
    }

    /// Reads the versions named in `learning` so that Redis tracks them, and keeps
    /// them unless an invalidation came while the read was out (it may be of one of
    /// them, and newer than what was read).
    async fn learn(&self, learning: &Learning) -> Result<(), Error> {
        let epoch = self.epoch();
        let mut pipe = redis::pipe();
        pipe.cmd("CLIENT").arg("CACHING").arg("YES").ignore();
        pipe.cmd("MGET").arg(&learning.keys);
        let (raw,): (Vec<Option<Vec<u8>>>,) = pipe.query_async(&mut self.conn.clone()).await?;
        let Some(values) = raw
            .iter()
            .map(|r| r.as_deref().and_then(parse_version))
            .collect::<Option<Vec<u64>>>()
        else {
            return Ok(());
        };
        let mut maps = self
            .known
            .versions
            .write()
            .unwrap_or_else(|e| e.into_inner());
        if self.known.closed.load(Ordering::SeqCst)
            || self.epoch() != epoch
            || values.len() != learning.names.len()
        {
            return Ok(());
        }
        if maps.iter().map(HashMap::len).sum::<usize>() + values.len() > REMEMBERED_VERSIONS {
            for map in maps.iter_mut() {
                map.clear();
            }
        }
        for ((slot, name), value) in learning.names.iter().zip(values) {
            maps[*slot].insert(name.clone(), value);
        }
        Ok(())
    }
}

/// The versions of one page to learn, owned: the work of a background task.
struct Learning {
    /// Kind (as a map index) and name of each version.
    names: Vec<(usize, Box<str>)>,
    /// Their Redis keys, in the same order.
    keys: Vec<String>,
}

/// Most versions reads in flight at once per store: hits that find nothing known
/// while these run are served by the `MGET`, and learn later.
const LEARNING_AT_ONCE: usize = 4;

impl Tracking {
    /// After a hit that had to read its versions: reads them again on the tracking
    /// connection, in the background, so that the next hits on the page are one `GET`.
    /// Only hits learn: a page read once (a miss on a URL never seen again) leaves
    /// nothing for Redis to track.
    pub(crate) fn learn_in_background(self: &Arc<Self>, link: Arc<Link>, page: PageKey<'_>) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if self
            .learning
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < LEARNING_AT_ONCE).then_some(n + 1)
            })
            .is_err()
        {
            return;
        }
        let names = page
            .groups
            .iter()
            .map(|g| Version::Group(g))
            .chain(page.scopes.iter().copied())
            .map(|v| (v.kind_index(), Box::from(v.name())))
            .collect();
        let learning = Learning {
            names,
            keys: keys::versions(&self.namespace, page),
        };
        let this = Arc::clone(self);
        runtime.spawn(async move {
            if let Err(err) = link.learn(&learning).await {
                tracing::debug!(error = %err, "could not learn versions to track");
            }
            this.learning.fetch_sub(1, Ordering::AcqRel);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn known() -> Known {
        Known {
            namespace: "ns".into(),
            ..Known::default()
        }
    }

    fn invalidate(keys: &[&str]) -> PushInfo {
        PushInfo {
            kind: PushKind::Invalidate,
            data: vec![Value::Array(
                keys.iter()
                    .map(|k| Value::BulkString(k.as_bytes().to_vec()))
                    .collect(),
            )],
        }
    }

    #[test]
    fn keys_are_read_back_to_versions() {
        let k = known();
        assert_eq!(
            k.tracked(b"ns:group:views"),
            Some(Tracked::Version(0, "views"))
        );
        assert_eq!(
            k.tracked(b"ns:url:/a?b=c:d"),
            Some(Tracked::Version(2, "/a?b=c:d"))
        );
        assert_eq!(k.tracked(b"ns:page:0123"), Some(Tracked::Page("0123")));
        assert_eq!(k.tracked(b"ns:lock:0123"), None);
        assert_eq!(k.tracked(b"other:group:views"), None);
        assert_eq!(k.tracked(b"nsx:group:views"), None);
    }

    fn entry(body: &'static str) -> Arc<Entry> {
        Arc::new(Entry {
            status: http::StatusCode::OK,
            headers: Vec::new(),
            body: bytes::Bytes::from_static(body.as_bytes()),
            created_ms: 0,
            ttl: Duration::from_secs(60),
            grace: Duration::ZERO,
            origin: "/a".to_owned(),
            scopes: Vec::new(),
            vary: None,
        })
    }

    #[test]
    fn an_invalidation_of_a_kept_page_drops_it_and_moves_the_epoch() {
        let k = Known {
            pages: Some(pages(1 << 20)),
            ..known()
        };
        let pages = k.pages.as_ref().unwrap();
        pages.insert("h1".into(), entry("one"));
        pages.insert("h2".into(), entry("two"));
        k.on_push(invalidate(&["ns:page:h1", "other:page:h2"]));
        assert!(pages.get("h1").is_none());
        assert!(pages.get("h2").is_some(), "another namespace's page");
        assert_eq!(k.epoch.load(Ordering::SeqCst), 1);
        // A flush drops every page.
        k.on_push(PushInfo {
            kind: PushKind::Invalidate,
            data: vec![Value::Nil],
        });
        assert!(pages.get("h2").is_none());
        assert_eq!(k.epoch.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn an_invalidation_forgets_the_version_and_moves_the_epoch() {
        let k = known();
        let groups = ["views".to_owned()];
        let scopes = [Version::Path("/a"), Version::Url("/a?x=1")];
        let page = PageKey {
            prefix: "",
            groups: &groups,
            key: "/a",
            caller: None,
            scopes: &scopes,
        };
        {
            let mut maps = k.versions.write().unwrap();
            maps[0].insert("views".into(), 7);
            maps[1].insert("/a".into(), 8);
            maps[2].insert("/a?x=1".into(), 9);
        }
        assert_eq!(k.versions_of(page), Some(vec![7, 8, 9]));
        let before = k.epoch.load(Ordering::SeqCst);
        // Keys of another namespace, or of another kind, change nothing.
        k.on_push(invalidate(&["other:path:/a", "ns:lock:abc"]));
        assert_eq!(k.epoch.load(Ordering::SeqCst), before);
        assert_eq!(k.versions_of(page), Some(vec![7, 8, 9]));
        k.on_push(invalidate(&["ns:path:/a"]));
        assert_eq!(k.versions_of(page), None);
        assert!(k.epoch.load(Ordering::SeqCst) > before);
        assert_eq!(k.versions.read().unwrap()[0].get("views"), Some(&7));
    }

    #[test]
    fn a_flush_or_a_disconnection_forgets_everything() {
        let k = known();
        k.versions.write().unwrap()[0].insert("views".into(), 7);
        k.on_push(PushInfo {
            kind: PushKind::Invalidate,
            data: vec![Value::Nil],
        });
        assert!(k.versions.read().unwrap()[0].is_empty());
        k.versions.write().unwrap()[0].insert("views".into(), 8);
        k.on_push(PushInfo {
            kind: PushKind::Disconnection,
            data: vec![],
        });
        assert!(k.versions.read().unwrap()[0].is_empty());
        assert!(k.closed.load(Ordering::SeqCst));
    }

    #[test]
    fn the_near_cache_holds_at_most_its_bytes() {
        let body: &'static str = "x".repeat(1000).leak();
        let kept = pages(64 * 1024);
        for i in 0..1000 {
            kept.insert(format!("{i:032x}").into(), entry(body));
        }
        let weight = quick_cache::Weighter::<Box<str>, _>::weight(
            &Weight { floor: 0 },
            &"0".repeat(32).into(),
            &entry(body),
        );
        assert!(weight > 1000, "the body counts: {weight}");
        assert!(kept.weight() <= 64 * 1024, "{} bytes kept", kept.weight());
        assert!(
            kept.len() as u64 >= 64 * 1024 / weight / 2,
            "{} pages kept",
            kept.len()
        );
        // The page kept last is there.
        assert!(kept.get(format!("{:032x}", 999).as_str()).is_some());
    }
}
