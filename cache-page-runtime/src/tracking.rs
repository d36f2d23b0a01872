//! A hit in one `GET`: the versions a page's key is made of are kept in process, on a
//! connection Redis promises to tell when any of them changes (client-side tracking,
//! RESP3).
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
    Error, PageKey, Version,
    redis_store::{keys, parse_version},
};

/// Most versions kept per connection; past it they are all dropped and learnt again.
pub(crate) const REMEMBERED_VERSIONS: usize = 200_000;

/// How long after a failed connection attempt the next one may start.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// Where the tracking connection of a store is, and how to make a new one.
pub(crate) struct Tracking {
    client: Client,
    timeouts: Timeouts,
    namespace: Arc<str>,
    link: RwLock<Option<Arc<Link>>>,
    attempt: Mutex<Attempt>,
    /// Set when the server refused tracking: no more attempts.
    refused: AtomicBool,
    /// How many connections were made, for tests and diagnostics.
    connections: AtomicU64,
    /// Version reads in flight to learn pages (at most [`LEARNING_AT_ONCE`]).
    learning: AtomicUsize,
}

#[derive(Clone, Copy)]
struct Timeouts {
    connect: Duration,
    command: Duration,
}

#[derive(Default)]
struct Attempt {
    running: bool,
    not_before: Option<Instant>,
}

/// One tracking connection and the versions learnt on it.
pub(crate) struct Link {
    conn: MultiplexedConnection,
    known: Arc<Known>,
}

/// The versions learnt on one connection, emptied by Redis's invalidation messages.
#[derive(Default)]
struct Known {
    namespace: Arc<str>,
    /// One map per kind of version (group, path, URL, prefix), by name.
    versions: RwLock<[HashMap<Box<str>, u64>; 4]>,
    /// Moves on with every invalidation of a version (or of all of them): a hit or a
    /// read that saw it move while it waited for Redis checks again.
    epoch: AtomicU64,
    /// The connection broke: nothing learnt on it can be trusted any more.
    closed: AtomicBool,
}

fn slot(version: Version<'_>) -> usize {
    match version {
        Version::Group(_) => 0,
        Version::Path(_) => 1,
        Version::Url(_) => 2,
        Version::Prefix(_) => 3,
    }
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
    .map(slot)
}

impl Known {
    fn on_push(&self, push: PushInfo) {
        match push.kind {
            PushKind::Invalidate => match push.data.first() {
                Some(Value::Array(keys)) => {
                    let mut versions = self.versions.write().unwrap_or_else(|e| e.into_inner());
                    let mut any = false;
                    for key in keys {
                        if let Value::BulkString(key) = key
                            && let Some((slot, name)) = self.version_of_key(key)
                        {
                            versions[slot].remove(name);
                            // Even a version not learnt moves the epoch: it may be
                            // being learnt, and what its reader read may be older.
                            any = true;
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
        self.epoch.fetch_add(1, Ordering::SeqCst);
    }

    /// The kind and name of a version key of this namespace, `<ns>:<kind>:<name>`.
    fn version_of_key<'k>(&self, key: &'k [u8]) -> Option<(usize, &'k str)> {
        let rest = key
            .strip_prefix(self.namespace.as_bytes())?
            .strip_prefix(b":")?;
        let colon = rest.iter().position(|&b| b == b':')?;
        let slot = slot_of_kind(&rest[..colon])?;
        Some((slot, std::str::from_utf8(&rest[colon + 1..]).ok()?))
    }

    /// The versions of `page`, groups then scopes, if every one is known.
    fn versions_of(&self, page: PageKey<'_>) -> Option<Vec<u64>> {
        let maps = self.versions.read().unwrap_or_else(|e| e.into_inner());
        let mut out = Vec::with_capacity(page.groups.len() + page.scopes.len());
        for group in page.groups {
            out.push(*maps[0].get(group.as_str())?);
        }
        for scope in page.scopes {
            out.push(*maps[slot(*scope)].get(scope.name())?);
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
        connect_timeout: Duration,
        command_timeout: Duration,
    ) -> Self {
        let settings = info
            .redis_settings()
            .clone()
            .set_protocol(ProtocolVersion::RESP3);
        let client = Client::open(info.clone().set_redis_settings(settings))
            .expect("a connection info that opened a client opens another");
        Tracking {
            client,
            timeouts: Timeouts {
                connect: connect_timeout,
                command: command_timeout,
            },
            namespace,
            link: RwLock::new(None),
            attempt: Mutex::new(Attempt::default()),
            refused: AtomicBool::new(false),
            connections: AtomicU64::new(0),
            learning: AtomicUsize::new(0),
        }
    }

    /// How many tracking connections were made so far.
    pub(crate) fn connections(&self) -> u64 {
        self.connections.load(Ordering::Relaxed)
    }

    /// The live tracking connection, if there is one; otherwise starts making one in
    /// the background (at most one attempt at a time, one a second after failures).
    pub(crate) fn link(self: &Arc<Self>) -> Option<Arc<Link>> {
        if let Some(link) = &*self.link.read().unwrap_or_else(|e| e.into_inner())
            && !link.known.closed.load(Ordering::Acquire)
        {
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
        let known = Arc::new(Known {
            namespace: Arc::clone(&self.namespace),
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
        // reads, not the entries.
        let () = redis::cmd("CLIENT")
            .arg("TRACKING")
            .arg("ON")
            .arg("OPTIN")
            .query_async(&mut conn)
            .await?;
        Ok(Arc::new(Link { conn, known }))
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

impl Link {
    /// Marks the connection broken: a new one is made on the next hit.
    pub(crate) fn close(&self) {
        self.known.closed.store(true, Ordering::SeqCst);
    }

    /// A clone of the connection, for a command whose answer needs no tracking.
    pub(crate) fn connection(&self) -> MultiplexedConnection {
        self.conn.clone()
    }

    /// The versions of `page` (groups, then scopes) if all of them are known, and the
    /// epoch to pass to [`still`](Self::still) once the entry read at them is back.
    pub(crate) fn versions(&self, page: PageKey<'_>) -> Option<(Vec<u64>, u64)> {
        let epoch = self.known.epoch.load(Ordering::SeqCst);
        Some((self.known.versions_of(page)?, epoch))
    }

    /// Whether `versions` of `page`, known at `epoch`, are still its versions: no
    /// invalidation of them reached this connection since.
    pub(crate) fn still(&self, page: PageKey<'_>, versions: &[u64], epoch: u64) -> bool {
        if self.known.closed.load(Ordering::SeqCst) {
            return false;
        }
        self.known.epoch.load(Ordering::SeqCst) == epoch
            || self.known.versions_of(page).as_deref() == Some(versions)
    }

    /// Reads the versions named in `learning` so that Redis tracks them, and keeps
    /// them unless an invalidation came while the read was out (it may be of one of
    /// them, and newer than what was read).
    async fn learn(&self, learning: &Learning) -> Result<(), Error> {
        let epoch = self.known.epoch.load(Ordering::SeqCst);
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
            || self.known.epoch.load(Ordering::SeqCst) != epoch
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
            .map(|v| (slot(v), Box::from(v.name())))
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
        assert_eq!(k.version_of_key(b"ns:group:views"), Some((0, "views")));
        assert_eq!(k.version_of_key(b"ns:url:/a?b=c:d"), Some((2, "/a?b=c:d")));
        assert_eq!(k.version_of_key(b"ns:page:0123"), None);
        assert_eq!(k.version_of_key(b"other:group:views"), None);
        assert_eq!(k.version_of_key(b"nsx:group:views"), None);
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
        // Pages are not versions: their invalidations change nothing.
        k.on_push(invalidate(&["ns:page:abc"]));
        assert_eq!(k.epoch.load(Ordering::SeqCst), before);
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
}
