//! `RedisStore`: entries and group versions in Redis, over one multiplexed,
//! auto-reconnecting connection.
//!
//! Key layout, under one namespace (default `cache-page`):
//!
//! | key                       | type    | TTL                          |
//! |---------------------------|---------|------------------------------|
//! | `<ns>:page:<md5 hex>`     | string  | the page's timeout + grace   |
//! | `<ns>:group:<group>`      | integer | none                         |
//! | `<ns>:prefix:<prefix>`    | integer | none                         |
//! | `<ns>:path:<path>`        | integer | 5 min when seeded, extended to its longest page; a week once invalidated |
//! | `<ns>:url:<path?query>`   | integer | 5 min when seeded, extended to its longest page; a week once invalidated |
//! | `<ns>:soft:<group>`       | string  | a day: the group's last soft invalidation |
//! | `<ns>:tag:<tag>`          | set of page hashes | the longest page in it |
//! | `<ns>:lock:<md5 hex>`     | string  | the lock wait (only with `lock_across_instances`) |

use std::{
    collections::HashMap,
    sync::{
        Arc, OnceLock, RwLock,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use redis::{
    AsyncCommands, Client, Script,
    aio::{ConnectionManager, ConnectionManagerConfig},
};

use crate::{
    Entry, Error,
    entry::{Now, unix_ms},
    error::timed,
    replica,
    store::{
        BoxFuture, Lookup, PageKey, SOFT_WINDOW, SoftRecord, Store, Superseded, Version,
        version_seed,
    },
    tracking::{Link, Timeouts, Tracking},
};

/// The store's connection, for one command or pipeline: sent again, once, when the
/// connection manager refused it without sending it.
///
/// While Redis is down, the manager's attempts to reconnect fail, and it keeps the
/// last failure: the next command is answered with it at once, and starts a new
/// attempt in the background. After Redis returns, the first command (the circuit
/// breaker's probe) would fail so, and caching would resume only at the next probe, a
/// cooldown later. Sent again, it waits for the attempt its failure started. Only a
/// refused connection is retried: such a command never reached Redis, so sending it
/// again cannot apply it twice.
struct Trip(ConnectionManager);

impl redis::aio::ConnectionLike for Trip {
    fn req_packed_command<'a>(
        &'a mut self,
        cmd: &'a redis::Cmd,
    ) -> redis::RedisFuture<'a, redis::Value> {
        Box::pin(async move {
            match self.0.send_packed_command(cmd).await {
                Err(err) if err.is_connection_refusal() => self.0.send_packed_command(cmd).await,
                answer => answer,
            }
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<redis::Value>> {
        Box::pin(async move {
            match self.0.send_packed_commands(pipeline, offset, count).await {
                Err(err) if err.is_connection_refusal() => {
                    self.0.send_packed_commands(pipeline, offset, count).await
                }
                answers => answers,
            }
        })
    }

    fn get_db(&self) -> i64 {
        redis::aio::ConnectionLike::get_db(&self.0)
    }
}

/// Moves a version on in one command: `INCR` when it holds a number, otherwise a
/// fresh seed (never `INCR` from nothing, which would start again at 1 and could reach
/// entries invalidated long ago). `ARGV[2]`, when not 0, is the key's TTL.
pub(crate) const BUMP: &str = r"
local v
if tonumber(redis.call('GET', KEYS[1])) then
  v = redis.call('INCR', KEYS[1])
else
  redis.call('SET', KEYS[1], ARGV[1])
  v = tonumber(ARGV[1])
end
if tonumber(ARGV[2]) > 0 then
  redis.call('EXPIRE', KEYS[1], ARGV[2])
end
return v
";

/// [`BUMP`] for a group, which also records, under `KEYS[2]` for `ARGV[3]` seconds,
/// `"<version before> <version after> <ARGV[2]>"` (`ARGV[2]`: the time in ms), so that
/// pages stored before can still be found and served stale (a soft invalidation). A
/// group without a version has no pages to keep: it is only seeded. Versions are
/// written back as Redis returns them, as strings: Lua numbers would lose digits.
pub(crate) const BUMP_SOFT: &str = r"
local before = redis.call('GET', KEYS[1])
if tonumber(before) then
  redis.call('INCR', KEYS[1])
  local after = redis.call('GET', KEYS[1])
  redis.call('SET', KEYS[2], before .. ' ' .. after .. ' ' .. ARGV[2], 'EX', ARGV[3])
  return tonumber(after)
end
redis.call('SET', KEYS[1], ARGV[1])
return tonumber(ARGV[1])
";

/// Most group versions remembered per store (the guesses that make a hit one round
/// trip); a forgotten one only costs a second round trip.
pub(crate) const REMEMBERED_GROUPS: usize = 100_000;

/// The last version a store saw of each group: its guesses. Read on every hit, so a
/// plain map behind a read lock (a cache with eviction costs several times more per
/// read); when it holds [`REMEMBERED_GROUPS`] groups and a new one comes, it is
/// emptied, and each group forgotten costs one second round trip.
#[derive(Debug, Default)]
pub(crate) struct Seen(RwLock<HashMap<String, u64>>);

impl Seen {
    pub(crate) fn get(&self, group: &str) -> Option<u64> {
        self.0
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(group)
            .copied()
    }

    /// Remembers each group's version: `versions` starts with them, in order.
    pub(crate) fn remember(&self, groups: &[String], versions: &[u64]) {
        for (group, version) in groups.iter().zip(versions) {
            self.insert(group, *version);
        }
    }

    pub(crate) fn insert(&self, group: &str, version: u64) {
        let mut map = self.0.write().unwrap_or_else(|e| e.into_inner());
        match map.get_mut(group) {
            Some(seen) => *seen = version,
            None => {
                if map.len() >= REMEMBERED_GROUPS {
                    map.clear();
                }
                map.insert(group.to_owned(), version);
            }
        }
    }
}

/// The Redis store.
///
/// A hit costs one round trip at most: the versions of the page's groups and scopes,
/// and the pages hit, are kept in process, on a second connection whose reads Redis
/// tracks and whose copies it invalidates (see
/// [`tracked_versions`](RedisStoreBuilder::tracked_versions) and
/// [`near_cache_bytes`](RedisStoreBuilder::near_cache_bytes)). A hit on a kept page
/// waits for one `PING` on that connection, shared by the hits waiting at once; a hit
/// on a page not kept is one `GET`. An invalidation made by any process is seen by
/// every request that starts after it returned (or, with an
/// [`invalidation_lag`](RedisStoreBuilder::invalidation_lag), that long after). Until that
/// connection is up, and for versions not read yet, a hit reads the versions in the
/// same `MGET` as the entry stored at the group versions this process saw last; only
/// when a group version moved (another process invalidated it) is a second read
/// needed.
///
/// In process, the store also keeps the entries it decoded last (at most 8 MiB, none
/// over 32 KiB), so that a hit whose stored bytes did not change skips decoding them.
/// Every hit still reads Redis and serves exactly what it holds.
///
/// The connections are made lazily and re-made by themselves after a failure, so an
/// application starts and serves pages (uncached) while Redis is down.
///
/// # Example
///
/// ```no_run
/// use std::time::Duration;
/// use cache_page_runtime::{Cache, RedisStore};
///
/// # fn main() -> Result<(), cache_page_runtime::Error> {
/// let store = RedisStore::builder("redis://127.0.0.1:6379")
///     .namespace("shop")
///     .command_timeout(Duration::from_millis(100))
///     .build()?;
/// cache_page_runtime::install(Cache::new(store))?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisStore {
    /// Made on first use: redis-rs spawns a task when it is made, so building the
    /// store must not, or it would need a runtime.
    conn: Arc<OnceLock<ConnectionManager>>,
    client: Client,
    config: ConnectionManagerConfig,
    namespace: Arc<str>,
    /// The last version this process saw of each group.
    seen: Arc<Seen>,
    bump: Arc<Script>,
    bump_soft: Arc<Script>,
    pipelined_hits: bool,
    /// The connection whose versions and pages Redis keeps us told of: a hit is one
    /// `PING` (shared) or one `GET`.
    tracking: Option<Arc<Tracking>>,
    round_trips: Arc<AtomicU64>,
    decoded: Arc<Decoded>,
    /// How long redis-rs waits for an answer: past it, an [`Error::Timeout`].
    command_timeout: Duration,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("namespace", &self.namespace)
            .field("tracked_versions", &self.tracking.is_some())
            .field(
                "near_cache_bytes",
                &self.tracking.as_ref().map_or(0, |t| t.near_cache_bytes()),
            )
            .field(
                "invalidation_lag",
                &self
                    .tracking
                    .as_ref()
                    .map_or(Duration::ZERO, |t| t.invalidation_lag()),
            )
            .finish_non_exhaustive()
    }
}

/// Builds a [`RedisStore`].
///
/// ```
/// use std::time::Duration;
/// use cache_page_runtime::{RedisStore, Version};
///
/// # fn main() -> Result<(), cache_page_runtime::Error> {
/// // Building makes no connection: this works with Redis down.
/// let store = RedisStore::builder("redis://127.0.0.1:6379/2")
///     .namespace("shop")
///     .connect_timeout(Duration::from_millis(500))
///     .command_timeout(Duration::from_millis(100))
///     .build()?;
/// assert_eq!(store.version_key(Version::Group("views")), "shop:group:views");
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct RedisStoreBuilder {
    url: String,
    namespace: String,
    connect_timeout: Duration,
    command_timeout: Duration,
    pipelined_hits: bool,
    tracked_versions: bool,
    near_cache_bytes: u64,
    invalidation_lag: Duration,
}

impl RedisStore {
    /// A store on the Redis at `url` (`redis://host:port/db`), with the defaults of
    /// [`builder`](Self::builder). Fails only on a malformed URL; the connection itself
    /// is made on first use.
    pub fn open(url: &str) -> Result<Self, Error> {
        Self::builder(url).build()
    }

    /// Starts a builder: namespace `cache-page`, connect timeout 1 s, command timeout
    /// 250 ms.
    pub fn builder(url: impl Into<String>) -> RedisStoreBuilder {
        RedisStoreBuilder {
            url: url.into(),
            namespace: "cache-page".to_owned(),
            connect_timeout: Duration::from_secs(1),
            command_timeout: Duration::from_millis(250),
            pipelined_hits: true,
            tracked_versions: true,
            near_cache_bytes: DEFAULT_NEAR_CACHE_BYTES,
            invalidation_lag: Duration::ZERO,
        }
    }

    /// The namespace every key of this store lives under.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The Redis key of the entry whose hash is `hash`.
    pub fn page_key(&self, hash: &str) -> String {
        keys::page(&self.namespace, hash)
    }

    /// The Redis key holding `version`, such as `cache-page:group:views`.
    pub fn version_key(&self, version: Version<'_>) -> String {
        keys::version(&self.namespace, version)
    }

    /// The Redis key of the set of page hashes recorded under `tag`.
    pub fn tag_key(&self, tag: &str) -> String {
        keys::tag(&self.namespace, tag)
    }

    /// The Redis key of the lock that coalesces misses of the page at `hash` across
    /// instances.
    pub fn lock_key(&self, hash: &str) -> String {
        keys::lock(&self.namespace, hash)
    }

    /// The number of round trips to Redis this store (and its clones) made for
    /// requests and invalidations: each command or pipeline sent counts one. A hit
    /// costs one. The reads the store makes in the background to learn the versions of
    /// a page it found (see [`RedisStoreBuilder::tracked_versions`]) are not counted.
    pub fn round_trips(&self) -> u64 {
        self.round_trips.load(Ordering::Relaxed)
    }

    fn trip(&self) -> Result<Trip, Error> {
        self.count_trip();
        self.connection().map(Trip)
    }

    fn count_trip(&self) {
        self.round_trips.fetch_add(1, Ordering::Relaxed);
    }

    /// How many tracking connections (see [`RedisStoreBuilder::tracked_versions`]) this
    /// store has made: 1 once the first is up, one more after each reconnection.
    pub fn tracking_connections(&self) -> u64 {
        self.tracking.as_ref().map_or(0, |t| t.connections())
    }

    /// The tracking connection, if it is up and hits may use it.
    fn link(&self) -> Option<Arc<Link>> {
        self.tracking.as_ref().and_then(Tracking::link)
    }

    /// After a write of this process, with an invalidation lag, when `page` (or any
    /// page, for `None`) is kept in process: waits until the tracking connection has
    /// heard of the write, so that this process's next hits see it however short the
    /// time. (A page no longer kept was dropped by that news already, or is read from
    /// Redis by the next hit.)
    async fn settle(&self, page: Option<&str>) {
        let lagging = (self.tracking.as_ref()).is_some_and(|t| !t.invalidation_lag().is_zero());
        if !lagging {
            return;
        }
        let Some(link) = self.link() else { return };
        let kept = match page {
            Some(hash) => link.kept(hash).is_some(),
            None => link.keeps_pages(),
        };
        if kept && link.confirm().await.is_err() {
            // Its pages go with it: nothing unconfirmed is served.
            link.close();
        }
    }

    /// A hit at the versions the tracking connection knows: the page kept in process
    /// once a `PING` sent after the lookup began is back (shared by the hits waiting
    /// at once), or else one `GET`. `None` when the versions are not all known, or
    /// one was invalidated meanwhile.
    async fn tracked_lookup(
        &self,
        link: &Link,
        page: PageKey<'_>,
    ) -> Result<Option<Lookup>, Error> {
        // A page kept on this connection that this thread has a copy of, made at the
        // epoch now: served as a kept page is, once the barrier is passed and if the
        // epoch did not move meanwhile, but with nothing looked up or hashed.
        let now = link.keeps_pages().then(Now::read);
        if let Some(now) = now {
            let at = link.epoch();
            if let Some(copy) = replica::copy_at(link.number(), at, &page, now) {
                if let Err(err) = link.pass().await {
                    link.close();
                    return Err(err);
                }
                if link.still_at(at) {
                    return Ok(Some(copy));
                }
            }
        }
        let Some((mut versions, epoch)) = link.versions(page) else {
            return Ok(None);
        };
        let n = page.groups.len();
        let hash = page.hash_at(versions[..n].iter().copied());
        let entry = if let Some(kept) = link.kept(&hash) {
            if let Err(err) = link.pass().await {
                // Its barrier is broken for good: the next hits make a new connection.
                link.close();
                return Err(err);
            }
            if !link.still_kept(page, &versions, epoch, &hash, &kept) {
                return Ok(None);
            }
            Some(kept)
        } else {
            let raw = self.tracked_get(link, &hash).await?;
            if !link.still(page, &versions, epoch) {
                return Ok(None);
            }
            let entry = self.decoded.decode(&hash, raw);
            if let Some(entry) = &entry {
                link.keep(&hash, entry, epoch);
            }
            entry
        };
        // What is left once the group versions are gone are the scopes' (no second
        // vector on the hit path).
        versions.drain(..n);
        let lookup = Lookup {
            entry,
            hash,
            scopes: versions,
        };
        // Copied by the thread the second time it finds the page with nothing changed,
        // as a copy of a `MemoryStore`'s page is; only while the epoch the versions were
        // read at stands, so that a copy is never made of what was found before a move.
        if let Some(now) = now
            && lookup.entry.is_some()
            && link.still_at(epoch)
        {
            replica::offer_at(link.number(), epoch, &page, &lookup, now);
        }
        Ok(Some(lookup))
    }

    /// The entry at `hash`, read on the tracking connection: one `GET`, which Redis
    /// tracks (`CLIENT CACHING YES` in the same write) when the link keeps pages.
    async fn tracked_get(&self, link: &Link, hash: &str) -> Result<Option<Vec<u8>>, Error> {
        self.count_trip();
        let key = keys::PageArg(&self.namespace, hash);
        if link.keeps_pages() {
            let mut pipe = redis::pipe();
            pipe.cmd("CLIENT").arg("CACHING").arg("YES").ignore();
            pipe.cmd("GET").arg(key);
            let (raw,): (Option<Vec<u8>>,) = pipe.query_async(&mut link.connection()).await?;
            return Ok(raw);
        }
        // Sized for the command at once: `redis::cmd` would grow its buffers twice.
        let mut get = redis::Cmd::with_capacity(2, 16 + self.namespace.len() + hash.len());
        get.arg("GET").arg(key);
        Ok(get.query_async(&mut link.connection()).await?)
    }

    /// A clone of the underlying connection, for commands of your own. The first call
    /// creates it (inside the Tokio runtime, which redis-rs needs); it connects lazily
    /// and reconnects by itself.
    pub fn connection(&self) -> Result<ConnectionManager, Error> {
        if let Some(conn) = self.conn.get() {
            return Ok(conn.clone());
        }
        let conn =
            ConnectionManager::new_lazy_with_config(self.client.clone(), self.config.clone())?;
        Ok(self.conn.get_or_init(|| conn).clone())
    }

    fn guess(&self, groups: &[String]) -> Option<Vec<u64>> {
        groups.iter().map(|g| self.seen.get(g)).collect()
    }

    /// A lookup that reads the versions: one `MGET` of them and of the entry at the
    /// group versions seen last, or, when those moved, the versions then the entry.
    /// `tracked` when hits go down the tracking connection and this one found the
    /// versions unknown there.
    async fn untracked_lookup(&self, page: PageKey<'_>, tracked: bool) -> Result<Lookup, Error> {
        let n = page.groups.len();
        if let Some(guess) = self.guess(page.groups).filter(|_| self.pipelined_hits) {
            // One command: every version, and the entry at the guessed ones, in
            // one MGET (cheaper for Redis than a pipeline of MGET and GET). The
            // keys are written into the command in place, and the reply is taken
            // apart by hand: this is the hit path until the versions are tracked.
            let hash = page.hash_at(guess.iter().copied());
            let ns = &*self.namespace;
            let count = n + page.scopes.len();
            let mut mget = redis::Cmd::with_capacity(count + 2, 64 * (count + 1));
            mget.arg("MGET");
            for g in page.groups {
                mget.arg(keys::Arg(ns, Version::Group(g)));
            }
            for v in page.scopes {
                mget.arg(keys::Arg(ns, *v));
            }
            mget.arg(keys::PageArg(ns, &hash));
            let reply: redis::Value = if tracked {
                // Hits go down the tracking connection: this is a miss, or a page's
                // first hit on it. Missing path and URL versions (a URL never seen)
                // are seeded ahead of the MGET in the same write, `SET NX` leaving
                // any existing one alone, so a new URL costs no round trip of its
                // own. They are still seeded before the handler runs, so that an
                // invalidation during its run moves the version away from the one
                // the entry records.
                let seed = version_seed();
                let mut pipe = redis::pipe();
                for (v, ttl) in page.scopes.iter().filter_map(|v| Some((*v, v.ttl()?))) {
                    pipe.cmd("SET")
                        .arg(keys::Arg(ns, v))
                        .arg(seed)
                        .arg("NX")
                        .arg("EX")
                        .arg(ttl.as_secs())
                        .ignore();
                }
                pipe.add_command(mget);
                let (reply,): (redis::Value,) = pipe.query_async(&mut self.trip()?).await?;
                reply
            } else {
                // Without tracking (or with its connection down) the MGET is the
                // hit path, which writes nothing.
                mget.query_async(&mut self.trip()?).await?
            };
            let redis::Value::Array(mut values) = reply else {
                return Err(Error::Corrupt("MGET answered something else than an array"));
            };
            if values.len() != count + 1 {
                return Err(Error::Corrupt("MGET answered the wrong number of values"));
            }
            let raw_entry = values.pop().and_then(bulk);
            let groups_as_guessed = values[..n]
                .iter()
                .map(version_of)
                .eq(guess.iter().map(|&v| Some(v)));
            if groups_as_guessed {
                // The entry read is the page's. Scope versions never read before
                // (a new URL) are seeded now; an entry, if any, recorded others
                // and will not be served.
                let read: Option<Vec<u64>> = values[n..].iter().map(version_of).collect();
                let scopes = match read {
                    Some(scopes) => scopes,
                    None => {
                        let keys = keys::versions(ns, page);
                        let raw: Vec<Option<Vec<u8>>> = values.into_iter().map(bulk).collect();
                        let versions = self.complete_versions(page, &keys, &raw).await?;
                        versions[n..].to_vec()
                    }
                };
                let entry = self.decoded.decode(&hash, raw_entry);

                return Ok(Lookup {
                    hash,
                    entry,
                    scopes,
                });
            }
        }
        // A group version moved or was never seen here, or a version is missing:
        // read and seed them, then the entry at the current versions.
        let versions = self.read_versions(page).await?;
        let hash = page.hash_at(versions[..n].iter().copied());
        let entry = self.get(&hash).await?;
        Ok(Lookup {
            hash,
            entry,
            scopes: versions[n..].to_vec(),
        })
    }

    /// Reads every version of `page` (groups, then scopes), seeding missing or damaged
    /// ones in one more round trip.
    async fn read_versions(&self, page: PageKey<'_>) -> Result<Vec<u64>, Error> {
        let keys = keys::versions(&self.namespace, page);
        let raw: Vec<Option<Vec<u8>>> = redis::cmd("MGET")
            .arg(&keys)
            .query_async(&mut self.trip()?)
            .await?;
        let versions = self.complete_versions(page, &keys, &raw).await?;
        self.seen.remember(page.groups, &versions);
        Ok(versions)
    }

    /// The versions read as `raw` (groups, then scopes), with the missing or damaged
    /// ones seeded in one more round trip.
    async fn complete_versions(
        &self,
        page: PageKey<'_>,
        keys: &[String],
        raw: &[Option<Vec<u8>>],
    ) -> Result<Vec<u64>, Error> {
        let mut versions: Vec<Option<u64>> = raw
            .iter()
            .map(|r| r.as_deref().and_then(parse_version))
            .collect();
        let missing: Vec<usize> = (0..keys.len()).filter(|&i| versions[i].is_none()).collect();
        if !missing.is_empty() {
            let mut pipe = redis::pipe();
            for &i in &missing {
                let ttl = if i < page.groups.len() {
                    None
                } else {
                    page.scopes[i - page.groups.len()].ttl()
                };
                let set = pipe.cmd("SET").arg(&keys[i]).arg(version_seed());
                // A damaged value is replaced; a missing one is set unless another
                // process just did.
                if raw[i].is_none() {
                    set.arg("NX");
                }
                if let Some(ttl) = ttl {
                    set.arg("EX").arg(ttl.as_secs());
                }
                set.ignore();
                pipe.cmd("GET").arg(&keys[i]);
            }
            let seeded: Vec<Option<Vec<u8>>> = pipe.query_async(&mut self.trip()?).await?;
            for (&i, raw) in missing.iter().zip(seeded) {
                versions[i] = raw.as_deref().and_then(parse_version);
            }
        }
        let versions: Vec<u64> = versions
            .into_iter()
            .collect::<Option<_>>()
            .ok_or(Error::Corrupt("a version could not be seeded"))?;
        Ok(versions)
    }
}

/// Bytes of pages a [`RedisStore`] keeps in process unless told otherwise.
const DEFAULT_NEAR_CACHE_BYTES: u64 = 32 * 1024 * 1024;

impl RedisStoreBuilder {
    /// The namespace every key lives under (default `cache-page`).
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = namespace.into();
        self
    }

    /// How long to wait for a connection to Redis (default 1 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long to wait for the answer to a command (default 250 ms). A request never
    /// waits longer than this for the cache; past it the page is served uncached.
    pub fn command_timeout(mut self, timeout: Duration) -> Self {
        self.command_timeout = timeout;
        self
    }

    /// Whether a lookup pipelines the version reads with the entry read at the
    /// versions last seen (default `true`: one round trip per hit). `false` reads the
    /// versions, then the entry: two round trips, the seed package's design, kept for
    /// comparison in benchmarks and tests.
    pub fn pipelined_hits(mut self, on: bool) -> Self {
        self.pipelined_hits = on;
        self
    }

    /// Whether hits read only the entry, at versions kept in process on a connection
    /// Redis tells of their changes (default `true`; Redis 6 or later, RESP3). A hit is
    /// then one `GET` (or one shared `PING` for a page kept in process, see
    /// [`near_cache_bytes`](Self::near_cache_bytes)), and an invalidation from any
    /// process is still seen by every request that starts after it returns: Redis
    /// sends the news of a change down that connection before the answer to any read
    /// made after it, and a hit that finds news of its versions with its answer reads
    /// again.
    ///
    /// The store makes this connection itself (one more connection per store), and
    /// makes it again after a failure; until it is up, or when the server refuses
    /// tracking, hits read the versions and the entry in one `MGET` (`false` always
    /// does). A page's versions are learnt after its first hit, by one more read in
    /// the background, so pages requested once cost nothing more. The server keeps the
    /// names of the versions each store has learnt (see `tracking-table-max-keys` in
    /// redis.conf).
    ///
    /// Turn it off behind a proxy that accepts `CLIENT TRACKING` but does not pass
    /// Redis's invalidation messages on: hits would not hear of invalidations.
    /// (`CACHE_PAGE_REDIS_TRACKING=off` does it for [`Cache::from_env`](crate::Cache::from_env).)
    pub fn tracked_versions(mut self, on: bool) -> Self {
        self.tracked_versions = on;
        self
    }

    /// Most bytes of pages kept in process (default 32 MiB; 0 keeps none), with
    /// [`tracked_versions`](Self::tracked_versions) on.
    ///
    /// A page read on the tracking connection is read so that Redis tracks its key
    /// too, and kept. The next hits on it read nothing from Redis: each waits for one
    /// `PING` sent on that connection after it began, and every hit that arrives
    /// while a `PING` is out shares the next one. Any change of the page, or of its
    /// versions, made before the hit began has been announced on the connection before
    /// that `PONG`, so a kept page is exactly as fresh as one read with the hit: an
    /// invalidation from any process is still seen by every request that starts after
    /// it returns. When the connection breaks, its pages go with it. (An
    /// [`invalidation_lag`](Self::invalidation_lag) trades some of that freshness for
    /// hits that do not wait.)
    ///
    /// With `0`, a hit is one `GET` of the entry at the tracked versions. Pages are
    /// weighed by their body, headers and URL; Redis also keeps the names of the
    /// pages each store keeps (see `tracking-table-max-keys` in redis.conf).
    /// (`CACHE_PAGE_REDIS_NEAR_CACHE_BYTES` sets it for
    /// [`Cache::from_env`](crate::Cache::from_env).)
    pub fn near_cache_bytes(mut self, max_bytes: u64) -> Self {
        self.near_cache_bytes = max_bytes;
        self
    }

    /// How long after an invalidation returns a hit on a page kept in process may
    /// still serve the page it replaced (default zero), with
    /// [`near_cache_bytes`](Self::near_cache_bytes) above zero.
    ///
    /// With zero, each such hit waits for a `PING` sent after it began (shared by the
    /// hits waiting at once), and an invalidation from any process is seen by every
    /// request that begins after it returns. With a lag, a hit is served at once while
    /// a `PING` sent at most that long before it began has been answered; the store
    /// sends one whenever the last is half a lag old, so under steady hits none of
    /// them waits for Redis. An invalidation is then seen by every request that begins
    /// more than the lag after it returned (in practice much sooner: Redis's message
    /// about it is applied as soon as it arrives, and the lag only bounds how late
    /// that may be), and at once by the requests of the process that made it:
    /// [`bump`](crate::Store::bump) and the other writes of this store wait for a
    /// `PING` of their own before they return. If the tracking connection stops
    /// answering, its pages stop being served within the lag and one command timeout.
    ///
    /// When no answered `PING` is that recent, a hit waits as it would with no lag.
    /// So choose a lag several times the `PING`'s round trip under load: in the load
    /// benchmark, on 2 shared cores, a fifth of the hits still waited with 1 ms, one in
    /// a hundred with 5 ms (see BENCHMARKS.md); the `cache_page_lag_waits_total`
    /// counter (with the `metrics` feature) counts such hits in production. A few
    /// milliseconds are far below what a user can tell from an instant change.
    /// (`CACHE_PAGE_REDIS_INVALIDATION_LAG_MS` sets it for
    /// [`Cache::from_env`](crate::Cache::from_env).)
    ///
    /// ```
    /// use std::time::Duration;
    /// use cache_page_runtime::RedisStore;
    ///
    /// # fn main() -> Result<(), cache_page_runtime::Error> {
    /// // Hits may serve a page up to 5 ms after another process invalidated it.
    /// let store = RedisStore::builder("redis://127.0.0.1:6379/")
    ///     .invalidation_lag(Duration::from_millis(5))
    ///     .build()?;
    /// assert!(format!("{store:?}").contains("invalidation_lag: 5ms"));
    /// # Ok(()) }
    /// ```
    pub fn invalidation_lag(mut self, lag: Duration) -> Self {
        self.invalidation_lag = lag;
        self
    }

    /// Builds the store. The connection is made on first use and re-made after
    /// failures, so this fails only on a malformed URL.
    pub fn build(self) -> Result<RedisStore, Error> {
        let client = Client::open(self.url.as_str())?;
        let namespace: Arc<str> = self.namespace.into();
        // Without pipelined hits every hit reads the versions: nothing to track.
        let round_trips: Arc<AtomicU64> = Arc::default();
        let tracking = (self.tracked_versions && self.pipelined_hits).then(|| {
            Arc::new(Tracking::new(
                client.get_connection_info(),
                Arc::clone(&namespace),
                Timeouts {
                    connect: self.connect_timeout,
                    command: self.command_timeout,
                    lag: self.invalidation_lag,
                },
                self.near_cache_bytes,
                Arc::clone(&round_trips),
            ))
        });
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.connect_timeout))
            .set_response_timeout(Some(self.command_timeout))
            // One attempt per reconnection, no backoff: while Redis is down a request
            // is served uncached at once, rather than after the attempts' sleeps, and
            // the first command after it returns reaches it (see `Trip`).
            .set_number_of_retries(0);
        Ok(RedisStore {
            conn: Arc::default(),
            client,
            config,
            namespace,
            seen: Arc::default(),
            bump: Arc::new(Script::new(BUMP)),
            bump_soft: Arc::new(Script::new(BUMP_SOFT)),
            pipelined_hits: self.pipelined_hits,
            tracking,
            round_trips,
            decoded: Arc::new(Decoded::new()),
            command_timeout: self.command_timeout,
        })
    }
}

/// The key layout shared by the Redis stores (standalone and cluster): one namespace,
/// then the kind of key, then its name.
pub(crate) mod keys {
    use crate::{PageKey, Version};

    /// The one layout: `<namespace>:<kind>:<name>`, as the pieces a key is made of.
    fn pieces<'a>(namespace: &'a str, kind: &'a str, name: &'a str) -> [&'a [u8]; 5] {
        [
            namespace.as_bytes(),
            b":",
            kind.as_bytes(),
            b":",
            name.as_bytes(),
        ]
    }

    fn key(namespace: &str, kind: &str, name: &str) -> String {
        String::from_utf8(pieces(namespace, kind, name).concat()).expect("pieces of strs")
    }

    pub(crate) fn page(namespace: &str, hash: &str) -> String {
        key(namespace, "page", hash)
    }

    pub(crate) fn version(namespace: &str, version: Version<'_>) -> String {
        key(namespace, version.kind(), version.name())
    }

    /// The version keys of a page: its groups', then its scopes'.
    pub(crate) fn versions(namespace: &str, page: PageKey<'_>) -> Vec<String> {
        page.groups
            .iter()
            .map(|g| version(namespace, Version::Group(g)))
            .chain(page.scopes.iter().map(|v| version(namespace, *v)))
            .collect()
    }

    /// A version key written straight into a command, without a `String` of its own.
    pub(crate) struct Arg<'a>(pub(crate) &'a str, pub(crate) Version<'a>);

    /// A page key written straight into a command.
    pub(crate) struct PageArg<'a>(pub(crate) &'a str, pub(crate) &'a str);

    /// Writes the key as one argument, put together on the stack: redis-rs's writer
    /// for an argument in pieces buffers them in a `Vec` of its own, which cost a hit
    /// more than a thousand instructions per key.
    fn write_key<W>(out: &mut W, namespace: &str, kind: &str, name: &str)
    where
        W: ?Sized + redis::RedisWrite,
    {
        let pieces = pieces(namespace, kind, name);
        let mut buf = [0u8; 192];
        if pieces.iter().map(|p| p.len()).sum::<usize>() > buf.len() {
            out.write_arg(&pieces.concat());
            return;
        }
        let mut at = 0;
        for piece in pieces {
            buf[at..at + piece.len()].copy_from_slice(piece);
            at += piece.len();
        }
        out.write_arg(&buf[..at]);
    }

    impl redis::ToRedisArgs for Arg<'_> {
        fn write_redis_args<W>(&self, out: &mut W)
        where
            W: ?Sized + redis::RedisWrite,
        {
            let Arg(namespace, version) = self;
            write_key(out, namespace, version.kind(), version.name());
        }
    }

    impl redis::ToRedisArgs for PageArg<'_> {
        fn write_redis_args<W>(&self, out: &mut W)
        where
            W: ?Sized + redis::RedisWrite,
        {
            let PageArg(namespace, hash) = self;
            write_key(out, namespace, "page", hash);
        }
    }

    /// Where a group's last soft invalidation is recorded.
    pub(crate) fn soft(namespace: &str, group: &str) -> String {
        key(namespace, "soft", group)
    }

    pub(crate) fn tag(namespace: &str, tag: &str) -> String {
        key(namespace, "tag", tag)
    }

    pub(crate) fn lock(namespace: &str, hash: &str) -> String {
        key(namespace, "lock", hash)
    }
}

/// A version as stored: decimal digits, nothing else (no sign, no spaces).
pub(crate) fn parse_version(raw: &[u8]) -> Option<u64> {
    if raw.is_empty() || raw.len() > 20 {
        return None;
    }
    raw.iter().try_fold(0u64, |n, &b| {
        b.is_ascii_digit()
            .then_some(())
            .and_then(|()| n.checked_mul(10)?.checked_add(u64::from(b - b'0')))
    })
}

/// A soft invalidation's record as the Redis stores keep it:
/// `"<version before> <version after> <ms>"`.
pub(crate) fn parse_soft_record(raw: &[u8]) -> Option<SoftRecord> {
    let mut fields = raw.split(|&b| b == b' ').map(parse_version);
    let record = SoftRecord {
        before: fields.next()??,
        after: fields.next()??,
        at_ms: fields.next()??,
    };
    fields.next().is_none().then_some(record)
}

/// Where the page was stored before the soft invalidations of its groups, and when
/// the earliest of them happened, from `raw`: the groups' versions, then their soft
/// records.
pub(crate) fn superseded_hash(
    page: PageKey<'_>,
    raw: &[Option<Vec<u8>>],
) -> Result<Option<(String, u64)>, Error> {
    let n = page.groups.len();
    if raw.len() != 2 * n {
        return Err(Error::Corrupt("MGET answered the wrong number of values"));
    }
    let Some(current) = raw[..n]
        .iter()
        .map(|r| r.as_deref().and_then(parse_version))
        .collect::<Option<Vec<u64>>>()
    else {
        return Ok(None);
    };
    let records: Vec<Option<SoftRecord>> = raw[n..]
        .iter()
        .map(|r| r.as_deref().and_then(parse_soft_record))
        .collect();
    Ok(page
        .superseded_versions(&current, &records)
        .map(|(versions, at)| (page.hash_at(versions.iter().copied()), at)))
}

/// The bytes of one value of an `MGET` reply; `None` for a missing key (or anything
/// else).
fn bulk(value: redis::Value) -> Option<Vec<u8>> {
    match value {
        redis::Value::BulkString(raw) => Some(raw),
        _ => None,
    }
}

/// The version in one value of an `MGET` reply, if it holds one.
fn version_of(value: &redis::Value) -> Option<u64> {
    match value {
        redis::Value::BulkString(raw) => parse_version(raw),
        _ => None,
    }
}

/// A damaged or foreign value reads as a miss; the next store overwrites it.
fn decode(raw: Bytes) -> Option<Arc<Entry>> {
    match Entry::decode(raw) {
        Ok(entry) => Some(Arc::new(entry)),
        Err(err) => {
            tracing::warn!(error = %err, "ignoring a damaged cache entry");
            None
        }
    }
}

/// Entries decoded lately, so that a hit on a page whose stored bytes have not changed
/// does not decode them again (checking a header name and value costs more than
/// comparing the bytes).
///
/// A table of [`Decoded::SLOTS`] slots, each picked by a page hash, holding the last
/// entry decoded there and the bytes it was decoded from. Only the very same bytes
/// get the same entry back, so what is served is always what Redis holds at that
/// moment. Entries larger than [`Decoded::LARGEST`] are not kept: the table holds
/// 8 MiB at the most.
pub(crate) struct Decoded {
    slots: Box<[Slot]>,
}

/// The bytes last decoded in a slot, and their entry.
type Slot = RwLock<Option<(Bytes, Arc<Entry>)>>;

impl Decoded {
    const SLOTS: usize = 256;
    const LARGEST: usize = 32 * 1024;

    pub(crate) fn new() -> Self {
        Decoded {
            slots: (0..Self::SLOTS).map(|_| RwLock::new(None)).collect(),
        }
    }

    fn slot(&self, hash: &str) -> &Slot {
        // Page hashes are md5 in hex: their first bytes are as good as any.
        let spread = hash.bytes().take(4).fold(0usize, |acc, b| {
            acc.wrapping_mul(31).wrapping_add(usize::from(b))
        });
        &self.slots[spread % Self::SLOTS]
    }

    /// The entry stored under `hash` as `raw` (`None`: nothing stored, or damaged).
    pub(crate) fn decode(&self, hash: &str, raw: Option<Vec<u8>>) -> Option<Arc<Entry>> {
        let raw = Bytes::from(raw?);
        let slot = self.slot(hash);
        if let Some((bytes, entry)) = &*slot.read().unwrap_or_else(|e| e.into_inner())
            && *bytes == raw
        {
            return Some(Arc::clone(entry));
        }
        let entry = decode(raw.clone())?;
        if raw.len() <= Self::LARGEST {
            *slot.write().unwrap_or_else(|e| e.into_inner()) = Some((raw, Arc::clone(&entry)));
        }
        Some(entry)
    }
}

impl std::fmt::Debug for Decoded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decoded").finish_non_exhaustive()
    }
}

impl Store for RedisStore {
    fn lookup<'a>(&'a self, page: PageKey<'a>) -> BoxFuture<'a, Result<Lookup, Error>> {
        // Not `timed`: the hit path's future, where the wrapper cost 600 instructions
        // a hit. A lookup's error reaches business logic only through
        // `Cache::invalidate_key`, which maps a timeout itself.
        Box::pin(async move {
            let mut link = self.link();
            if let Some(tracked) = &link {
                match self.tracked_lookup(tracked, page).await {
                    Ok(Some(lookup)) => return Ok(lookup),
                    Ok(None) => {}
                    // Redis is slow: asking again would only be slower.
                    Err(err) if err.is_timeout() => return Err(err),
                    // The connection broke: a new one comes in the background, and
                    // this lookup goes on as if there were none.
                    Err(_) => {
                        tracked.close();
                        link = None;
                    }
                }
            }
            let lookup = self.untracked_lookup(page, link.is_some()).await?;
            if let (Some(link), Some(tracking), Some(_)) = (link, &self.tracking, &lookup.entry) {
                tracking.learn_in_background(link, page);
            }
            Ok(lookup)
        })
    }

    fn get<'a>(&'a self, hash: &'a str) -> BoxFuture<'a, Result<Option<Arc<Entry>>, Error>> {
        timed(self.command_timeout, async move {
            let raw: Option<Vec<u8>> = self.trip()?.get(self.page_key(hash)).await?;
            Ok(self.decoded.decode(hash, raw))
        })
    }

    fn insert<'a>(
        &'a self,
        hash: &'a str,
        entry: Arc<Entry>,
        tags: &'a [String],
    ) -> BoxFuture<'a, Result<(), Error>> {
        timed(self.command_timeout, async move {
            let secs = entry.store_ttl().as_secs().max(1);
            let mut pipe = redis::pipe();
            pipe.cmd("SET")
                .arg(self.page_key(hash))
                .arg(entry.encode().as_ref())
                .arg("EX")
                .arg(secs)
                .ignore();
            // The versions of the page's path and URL live at least as long as it
            // (EXPIRE GT: Redis 7; a missing key or one without a TTL is left alone).
            let path = entry
                .origin
                .split_once('?')
                .map_or(entry.origin.as_str(), |(p, _)| p);
            for version in [Version::Path(path), Version::Url(&entry.origin)] {
                pipe.cmd("EXPIRE")
                    .arg(self.version_key(version))
                    .arg(secs)
                    .arg("GT")
                    .ignore();
            }
            for tag in tags {
                let key = self.tag_key(tag);
                pipe.cmd("SADD").arg(&key).arg(hash).ignore();
                // The tag lives as long as its longest page (EXPIRE NX/GT: Redis 7).
                pipe.cmd("EXPIRE").arg(&key).arg(secs).arg("NX").ignore();
                pipe.cmd("EXPIRE").arg(&key).arg(secs).arg("GT").ignore();
            }
            let () = pipe.query_async(&mut self.trip()?).await?;
            self.settle(Some(hash)).await;
            Ok(())
        })
    }

    fn remove<'a>(&'a self, hash: &'a str) -> BoxFuture<'a, Result<bool, Error>> {
        timed(self.command_timeout, async move {
            let n: u64 = self.trip()?.del(self.page_key(hash)).await?;
            self.settle(None).await;
            Ok(n > 0)
        })
    }

    fn bump<'a>(&'a self, version: Version<'a>) -> BoxFuture<'a, Result<u64, Error>> {
        timed(self.command_timeout, async move {
            let v: u64 = self
                .bump
                .key(self.version_key(version))
                .arg(version_seed())
                .arg(version.bumped_ttl().map_or(0, |t| t.as_secs()))
                .invoke_async(&mut self.trip()?)
                .await?;
            if let Version::Group(g) = version {
                self.seen.insert(g, v);
            }
            self.settle(None).await;
            Ok(v)
        })
    }

    fn bump_soft<'a>(&'a self, group: &'a str) -> BoxFuture<'a, Result<u64, Error>> {
        timed(self.command_timeout, async move {
            let v: u64 = self
                .bump_soft
                .key(self.version_key(Version::Group(group)))
                .key(keys::soft(&self.namespace, group))
                .arg(version_seed())
                .arg(unix_ms(std::time::SystemTime::now()))
                .arg(SOFT_WINDOW.as_secs())
                .invoke_async(&mut self.trip()?)
                .await?;
            self.seen.insert(group, v);
            self.settle(None).await;
            Ok(v)
        })
    }

    fn soft_lookup<'a>(
        &'a self,
        page: PageKey<'a>,
    ) -> BoxFuture<'a, Result<Option<Superseded>, Error>> {
        timed(self.command_timeout, async move {
            if page.groups.is_empty() {
                return Ok(None);
            }
            // The groups' versions and their soft records, in one MGET.
            let ns = &*self.namespace;
            let mut mget = redis::cmd("MGET");
            for g in page.groups {
                mget.arg(keys::Arg(ns, Version::Group(g)));
            }
            for g in page.groups {
                mget.arg(keys::soft(ns, g));
            }
            let raw: Vec<Option<Vec<u8>>> = mget.query_async(&mut self.trip()?).await?;
            let Some((hash, invalidated_ms)) = superseded_hash(page, &raw)? else {
                return Ok(None);
            };
            Ok(self.get(&hash).await?.map(|entry| Superseded {
                hash,
                entry,
                invalidated_ms,
            }))
        })
    }

    fn version<'a>(&'a self, version: Version<'a>) -> BoxFuture<'a, Result<u64, Error>> {
        timed(self.command_timeout, async move {
            let (groups, scopes) = match version {
                Version::Group(g) => (vec![g.to_owned()], Vec::new()),
                other => (Vec::new(), vec![other]),
            };
            let page = PageKey {
                prefix: "",
                groups: &groups,
                key: "",
                caller: None,
                scopes: &scopes,
            };
            Ok(self.read_versions(page).await?[0])
        })
    }

    fn lock<'a>(&'a self, hash: &'a str, ttl: Duration) -> BoxFuture<'a, Result<bool, Error>> {
        timed(self.command_timeout, async move {
            let ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
            let set: Option<String> = redis::cmd("SET")
                .arg(self.lock_key(hash))
                .arg(1)
                .arg("NX")
                .arg("PX")
                .arg(ms)
                .query_async(&mut self.trip()?)
                .await?;
            Ok(set.is_some())
        })
    }

    fn unlock<'a>(&'a self, hash: &'a str) -> BoxFuture<'a, Result<(), Error>> {
        timed(self.command_timeout, async move {
            let _: u64 = self.trip()?.del(self.lock_key(hash)).await?;
            Ok(())
        })
    }

    fn delete_tag<'a>(&'a self, tag: &'a str) -> BoxFuture<'a, Result<u64, Error>> {
        timed(self.command_timeout, async move {
            let key = self.tag_key(tag);
            let hashes: Vec<String> = self.trip()?.smembers(&key).await?;
            if hashes.is_empty() {
                return Ok(0);
            }
            // Only the members read are removed, so pages tagged meanwhile stay indexed.
            let pages: Vec<String> = hashes.iter().map(|h| self.page_key(h)).collect();
            let (deleted,): (u64,) = redis::pipe()
                .cmd("UNLINK")
                .arg(&pages)
                .cmd("SREM")
                .arg(&key)
                .arg(&hashes)
                .ignore()
                .query_async(&mut self.trip()?)
                .await?;
            self.settle(None).await;
            Ok(deleted)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{StatusCode, header};
    use std::time::Duration;

    fn page(body: &str) -> Vec<u8> {
        Entry {
            status: StatusCode::OK,
            headers: vec![(header::CONTENT_TYPE, "text/plain".parse().unwrap())],
            body: Bytes::copy_from_slice(body.as_bytes()),
            created_ms: 1_700_000_000_000,
            ttl: Duration::from_secs(60),
            grace: Duration::ZERO,
            origin: "/".into(),
            scopes: vec![1, 2],
            vary: None,
        }
        .encode()
        .to_vec()
    }

    #[test]
    fn seen_versions_are_remembered_up_to_a_bound() {
        let seen = Seen::default();
        assert_eq!(seen.get("views"), None);
        seen.insert("views", 7);
        seen.insert("views", 8);
        assert_eq!(seen.get("views"), Some(8));
        for i in 1..REMEMBERED_GROUPS {
            seen.insert(&format!("g{i}"), 1);
        }
        assert_eq!(seen.get("views"), Some(8), "full, but nothing new yet");
        // One more group: everything is forgotten but it.
        seen.insert("new", 1);
        assert_eq!((seen.get("views"), seen.get("g1")), (None, None));
        assert_eq!(seen.get("new"), Some(1));
    }

    #[test]
    fn the_same_bytes_are_decoded_once() {
        let decoded = Decoded::new();
        let first = decoded.decode("0123abcd", Some(page("one"))).unwrap();
        let again = decoded.decode("0123abcd", Some(page("one"))).unwrap();
        assert!(Arc::ptr_eq(&first, &again), "decoded again");
        assert_eq!(again.body, "one");
    }

    #[test]
    fn other_bytes_under_the_same_hash_are_decoded_anew() {
        let decoded = Decoded::new();
        let old = decoded.decode("0123abcd", Some(page("old"))).unwrap();
        let new = decoded.decode("0123abcd", Some(page("new"))).unwrap();
        assert_eq!(
            (old.body.as_ref(), new.body.as_ref()),
            (&b"old"[..], &b"new"[..])
        );
        // Back to the old bytes: the old page, whatever the slot held.
        assert_eq!(
            decoded.decode("0123abcd", Some(page("old"))).unwrap().body,
            "old"
        );
    }

    #[test]
    fn hashes_sharing_a_slot_get_their_own_entries() {
        let decoded = Decoded::new();
        // Equal first four bytes: the same slot.
        let (a, b) = ("0123aaaa", "0123bbbb");
        assert!(std::ptr::eq(decoded.slot(a), decoded.slot(b)));
        for _ in 0..3 {
            assert_eq!(decoded.decode(a, Some(page("a"))).unwrap().body, "a");
            assert_eq!(decoded.decode(b, Some(page("b"))).unwrap().body, "b");
        }
    }

    #[test]
    fn damaged_or_missing_bytes_are_a_miss() {
        let decoded = Decoded::new();
        assert!(decoded.decode("0123abcd", None).is_none());
        let mut damaged = page("one");
        damaged.truncate(damaged.len() - 1);
        assert!(decoded.decode("0123abcd", Some(damaged)).is_none());
        assert!(decoded.decode("0123abcd", Some(b"CPE".to_vec())).is_none());
        assert_eq!(
            decoded.decode("0123abcd", Some(page("one"))).unwrap().body,
            "one"
        );
    }

    #[test]
    fn large_entries_are_not_kept() {
        let decoded = Decoded::new();
        let body = "x".repeat(Decoded::LARGEST);
        let first = decoded.decode("0123abcd", Some(page(&body))).unwrap();
        let again = decoded.decode("0123abcd", Some(page(&body))).unwrap();
        assert_eq!(again.body.len(), Decoded::LARGEST);
        assert!(!Arc::ptr_eq(&first, &again), "a large entry was kept");
    }

    #[test]
    fn versions_are_plain_decimal_digits() {
        assert_eq!(parse_version(b"0"), Some(0));
        assert_eq!(parse_version(b"1732000000123"), Some(1_732_000_000_123));
        assert_eq!(parse_version(b"18446744073709551615"), Some(u64::MAX));
        for bad in [
            &b""[..],
            b"+5",
            b"-5",
            b" 5",
            b"5 ",
            b"5x",
            b"18446744073709551616",
            b"000000000000000000001",
        ] {
            assert_eq!(
                parse_version(bad),
                None,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn soft_records_parse_exactly_three_numbers() {
        assert_eq!(
            parse_soft_record(b"1795234570306707 1795234570306708 1732000000123"),
            Some(SoftRecord {
                before: 1_795_234_570_306_707,
                after: 1_795_234_570_306_708,
                at_ms: 1_732_000_000_123,
            })
        );
        for bad in [
            &b""[..],
            b"1 2",
            b"1 2 3 4",
            b"1  2 3",
            b"1 2 x",
            b"1.5e15 2 3",
        ] {
            assert_eq!(
                parse_soft_record(bad),
                None,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn keys_written_in_place_match_the_layout() {
        let written = |arg: &dyn Fn(&mut redis::Cmd)| {
            let mut cmd = redis::Cmd::new();
            arg(&mut cmd);
            cmd.args_iter()
                .map(|a| match a {
                    redis::Arg::Simple(bytes) => String::from_utf8(bytes.to_vec()).unwrap(),
                    _ => unreachable!("only simple arguments are written"),
                })
                .collect::<Vec<_>>()
        };
        // Keys that fit the stack buffer, one that fills it, and longer ones.
        let long = format!("/{}", "x".repeat(300));
        let filling = format!("/{}", "y".repeat(192 - "ns:path:/".len()));
        for version in [
            Version::Group("views"),
            Version::Path("/a b"),
            Version::Url("/a?x=1&y=2"),
            Version::Prefix(""),
            Version::Path(&filling),
            Version::Path(&filling[1..]),
            Version::Url(&long),
        ] {
            assert_eq!(
                written(&|cmd| {
                    cmd.arg(keys::Arg("ns", version));
                }),
                [keys::version("ns", version)]
            );
        }
        assert_eq!(
            written(&|cmd| {
                cmd.arg(keys::PageArg("ns", "0123abcd"));
            }),
            [keys::page("ns", "0123abcd")]
        );
    }
}
