//! `RedisClusterStore`: the [`RedisStore`](crate::RedisStore) key layout and behaviour
//! on a Redis Cluster, over one redis-rs `cluster_async::ClusterConnection`.
//!
//! No command touches two keys, so no command can cross hash slots: where
//! `RedisStore` reads the versions and the entry in one `MGET` (when it does not know
//! the versions already), this store sends one `GET` per key, all at once, on the
//! multiplexed cluster connection. They travel in parallel to the nodes owning their
//! slots, so a hit still costs one round trip of latency (the slowest of the nodes
//! involved), not one per key.
//!
//! It does not keep versions in process as `RedisStore` does with client-side
//! tracking: a page's entry and its versions live on different nodes, each on a
//! connection of its own, so no invalidation message would be ordered before the
//! entry's answer.
//!
//! Hash tags (`{…}` in key names) would put a page's versions and its entry in one
//! slot and allow `MGET`, but a page's keys are shared with other pages (a group's
//! version with every page of the group, a path's with every query string of it), so
//! there is no one tag that fits them all; and the key names would differ from
//! `RedisStore`'s. redis-rs can also split a multi-slot `MGET` into per-node commands
//! by itself, but such a fan-out is not retried on `MOVED` or a lost connection,
//! while single-key commands are.

use std::{
    collections::HashMap,
    sync::{Arc, OnceLock},
    time::Duration,
};

use futures_util::{
    StreamExt as _,
    future::{join, try_join_all},
    stream,
};
use redis::{
    AsyncCommands, ErrorKind, Script, ServerErrorKind,
    cluster::{ClusterClient, ClusterConfig},
    cluster_async::ClusterConnection,
    cluster_routing::{
        AggregateOp, MultipleNodeRoutingInfo, ResponsePolicy, Route, RoutingInfo,
        SingleNodeRoutingInfo, Slot, SlotAddr,
    },
};

use crate::{
    Entry, Error,
    entry::unix_ms,
    error::timed,
    redis_store::{BUMP, Decoded, Seen, parse_version, superseded_hash},
    store::{BoxFuture, Lookup, PageKey, SOFT_WINDOW, Store, Superseded, Version, version_seed},
};

/// Most single-key commands in flight at once when a tag's pages are deleted.
const DELETE_CONCURRENCY: usize = 64;

/// The Redis Cluster store: the same keys, versions and behaviour as
/// [`RedisStore`](crate::RedisStore), on a cluster.
///
/// Every command touches one key, so none crosses hash slots:
///
/// - **A hit** sends a `GET` for each version of the page (groups, path, URL, prefix)
///   and a `GET` for the entry stored at the group versions this process saw last,
///   all at once: one round trip of latency. Only when a group version moved (another
///   process invalidated it) is a second read needed, as with `RedisStore`.
/// - **A missing version** is seeded per key (`SET NX` then `GET`, one pipeline on the
///   key's node, all at once), with the current time in microseconds. A miss on a new
///   URL whose groups were guessed right is three round trips: the lookup, the seeding
///   of its path and URL versions, the store.
/// - **An invalidation** of a group, path, URL or prefix is one script on one key:
///   O(1), whatever the number of pages.
/// - **Storing** a page is a `SET` of its entry; with tags, each tag's `SADD` and
///   `EXPIRE`s follow (one pipeline per tag, all at once), after the entry is written,
///   so a tag deleted meanwhile can never leave the page behind untagged.
/// - **Deleting a tag** reads its members, then `UNLINK`s the pages grouped by hash
///   slot, one command per slot, then removes the members read from the tag.
///
/// Replicas are never read: a replica may lag behind an invalidation.
///
/// In process, the store keeps what [`RedisStore`](crate::RedisStore) keeps: the group
/// versions it saw last and the entries it decoded last (at most 8 MiB).
///
/// The connection is made on first use, in the background, and remade by itself after
/// failures (nodes lost, slots moved, failovers), so an application starts and serves
/// pages (uncached) while the cluster is down. Every command is bounded by the
/// command timeout, retries included.
///
/// The key names are those of `RedisStore` ([`page_key`](Self::page_key),
/// [`version_key`](Self::version_key), …), so tools written for one work with the other.
///
/// # Example
///
/// ```no_run
/// use std::time::Duration;
/// use cache_page_runtime::{Cache, RedisClusterStore};
///
/// # fn main() -> Result<(), cache_page_runtime::Error> {
/// let store = RedisClusterStore::builder([
///     "redis://10.0.0.1:6379",
///     "redis://10.0.0.2:6379",
///     "redis://10.0.0.3:6379",
/// ])
/// .namespace("shop")
/// .command_timeout(Duration::from_millis(100))
/// .build()?;
/// cache_page_runtime::install(Cache::new(store))?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisClusterStore {
    client: ClusterClient,
    config: ClusterConfig,
    /// Made on first use: making it spawns its task on the current Tokio runtime.
    conn: Arc<OnceLock<ClusterConnection>>,
    /// With `wait_for_replicas`: the connection invalidations and their `WAIT` go
    /// through, so that a `WAIT` (which holds its connection until the replicas answer)
    /// never delays a request's lookup, and covers the invalidation it follows.
    invalidations: Option<Invalidations>,
    namespace: Arc<str>,
    /// The last version this process saw of each group.
    seen: Arc<Seen>,
    bump: Arc<Script>,
    decoded: Arc<Decoded>,
    /// How long redis-rs waits for an answer: past it, an [`Error::Timeout`].
    command_timeout: Duration,
}

#[derive(Clone)]
struct Invalidations {
    client: ClusterClient,
    config: ClusterConfig,
    conn: Arc<OnceLock<ClusterConnection>>,
    replicas: u32,
    timeout: Duration,
}

impl std::fmt::Debug for RedisClusterStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisClusterStore")
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}

/// Builds a [`RedisClusterStore`].
///
/// ```
/// use std::time::Duration;
/// use cache_page_runtime::RedisClusterStore;
///
/// # fn main() -> Result<(), cache_page_runtime::Error> {
/// // Nothing is connected yet: this works while the cluster is down.
/// let store = RedisClusterStore::builder(["redis://127.0.0.1:7000", "redis://127.0.0.1:7001"])
///     .namespace("shop")
///     .connect_timeout(Duration::from_millis(500))
///     .command_timeout(Duration::from_millis(100))
///     .retries(2)
///     .build()?;
/// assert_eq!(store.namespace(), "shop");
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct RedisClusterStoreBuilder {
    nodes: Vec<String>,
    namespace: String,
    connect_timeout: Duration,
    command_timeout: Duration,
    retries: u32,
    wait_for_replicas: Option<(u32, Duration)>,
}

impl RedisClusterStore {
    /// A store on the cluster that `nodes` belong to (`redis://host:port` URLs; one
    /// reachable node is enough to find the others), with the defaults of
    /// [`builder`](Self::builder). Fails only on a malformed URL; the connection itself
    /// is made on first use.
    ///
    /// ```no_run
    /// use cache_page_runtime::{Cache, RedisClusterStore};
    ///
    /// # fn main() -> Result<(), cache_page_runtime::Error> {
    /// let store = RedisClusterStore::open(["redis://10.0.0.1:6379", "redis://10.0.0.2:6379"])?;
    /// cache_page_runtime::install(Cache::new(store))?;
    /// # Ok(()) }
    /// ```
    pub fn open<I, S>(nodes: I) -> Result<Self, Error>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self::builder(nodes).build()
    }

    /// Starts a builder: namespace `cache-page`, connect timeout 1 s, command timeout
    /// 250 ms (retries included), 3 retries.
    ///
    /// ```
    /// # fn main() -> Result<(), cache_page_runtime::Error> {
    /// let store = cache_page_runtime::RedisClusterStore::builder(["redis://127.0.0.1:7000"])
    ///     .build()?;
    /// assert_eq!(store.namespace(), "cache-page");
    /// # Ok(()) }
    /// ```
    pub fn builder<I, S>(nodes: I) -> RedisClusterStoreBuilder
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        RedisClusterStoreBuilder {
            nodes: nodes.into_iter().map(Into::into).collect(),
            namespace: "cache-page".to_owned(),
            connect_timeout: Duration::from_secs(1),
            command_timeout: Duration::from_millis(250),
            retries: 3,
            wait_for_replicas: None,
        }
    }

    /// The namespace every key of this store lives under.
    ///
    /// ```
    /// # fn main() -> Result<(), cache_page_runtime::Error> {
    /// let store = cache_page_runtime::RedisClusterStore::builder(["redis://127.0.0.1:7000"])
    ///     .namespace("shop")
    ///     .build()?;
    /// assert_eq!(store.namespace(), "shop");
    /// # Ok(()) }
    /// ```
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The Redis key of the entry whose hash is `hash`: `<namespace>:page:<hash>`, as
    /// [`RedisStore::page_key`](crate::RedisStore::page_key).
    ///
    /// ```
    /// # fn main() -> Result<(), cache_page_runtime::Error> {
    /// let store = cache_page_runtime::RedisClusterStore::open(["redis://127.0.0.1:7000"])?;
    /// let hash = cache_page_runtime::hash_key("", &[], "/about");
    /// assert_eq!(store.page_key(&hash), format!("cache-page:page:{hash}"));
    /// # Ok(()) }
    /// ```
    pub fn page_key(&self, hash: &str) -> String {
        crate::redis_store::keys::page(&self.namespace, hash)
    }

    /// The Redis key holding `version`, such as `cache-page:group:views`, as
    /// [`RedisStore::version_key`](crate::RedisStore::version_key).
    ///
    /// ```
    /// use cache_page_runtime::{RedisClusterStore, Version};
    ///
    /// # fn main() -> Result<(), cache_page_runtime::Error> {
    /// let store = RedisClusterStore::open(["redis://127.0.0.1:7000"])?;
    /// assert_eq!(store.version_key(Version::Group("views")), "cache-page:group:views");
    /// assert_eq!(store.version_key(Version::Path("/a")), "cache-page:path:/a");
    /// # Ok(()) }
    /// ```
    pub fn version_key(&self, version: Version<'_>) -> String {
        crate::redis_store::keys::version(&self.namespace, version)
    }

    /// The Redis key of the set of page hashes recorded under `tag`.
    ///
    /// ```
    /// # fn main() -> Result<(), cache_page_runtime::Error> {
    /// let store = cache_page_runtime::RedisClusterStore::open(["redis://127.0.0.1:7000"])?;
    /// assert_eq!(store.tag_key("products"), "cache-page:tag:products");
    /// # Ok(()) }
    /// ```
    pub fn tag_key(&self, tag: &str) -> String {
        crate::redis_store::keys::tag(&self.namespace, tag)
    }

    /// The Redis key of the lock that coalesces misses of the page at `hash` across
    /// instances.
    ///
    /// ```
    /// # fn main() -> Result<(), cache_page_runtime::Error> {
    /// let store = cache_page_runtime::RedisClusterStore::open(["redis://127.0.0.1:7000"])?;
    /// assert_eq!(store.lock_key("0123"), "cache-page:lock:0123");
    /// # Ok(()) }
    /// ```
    pub fn lock_key(&self, hash: &str) -> String {
        crate::redis_store::keys::lock(&self.namespace, hash)
    }

    /// A clone of the underlying cluster connection, for commands of your own. The
    /// connection is made on the first call (to this or to any store method), in the
    /// background, so this must be called within a Tokio runtime.
    ///
    /// ```no_run
    /// use cache_page_runtime::{RedisClusterStore, redis::AsyncCommands};
    ///
    /// # async fn f() -> Result<(), Box<dyn std::error::Error>> {
    /// let store = RedisClusterStore::open(["redis://127.0.0.1:7000"])?;
    /// let mut conn = store.connection();
    /// let version: Option<u64> = conn.get("cache-page:group:views").await?;
    /// # let _ = version; Ok(()) }
    /// ```
    pub fn connection(&self) -> ClusterConnection {
        self.conn
            .get_or_init(|| {
                self.client
                    .get_pending_async_connection_with_config(self.config.clone())
            })
            .clone()
    }

    /// How long redis-rs waits for an answer on the invalidation connection: the
    /// command timeout, plus the replicas' wait when there is one.
    fn invalidation_timeout(&self) -> Duration {
        match &self.invalidations {
            Some(inv) => self.command_timeout + inv.timeout,
            None => self.command_timeout,
        }
    }

    /// The connection an invalidation goes through: its own when it waits for
    /// replicas.
    fn invalidation_connection(&self) -> ClusterConnection {
        match &self.invalidations {
            Some(inv) => inv
                .conn
                .get_or_init(|| {
                    inv.client
                        .get_pending_async_connection_with_config(inv.config.clone())
                })
                .clone(),
            None => self.connection(),
        }
    }

    /// With `wait_for_replicas`, waits until enough replicas of the node holding `key`
    /// acknowledged the writes made through `conn`.
    async fn replicated(&self, conn: &mut ClusterConnection, key: &str) -> Result<(), Error> {
        let node = RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(Route::with_key(
            key,
            SlotAddr::Master,
        )));
        self.wait(conn, node).await
    }

    /// [`replicated`](Self::replicated) on every master, for writes spread over the
    /// cluster (a tag's pages): the fewest acknowledgements count.
    async fn replicated_everywhere(&self, conn: &mut ClusterConnection) -> Result<(), Error> {
        let masters = RoutingInfo::MultiNode((
            MultipleNodeRoutingInfo::AllMasters,
            Some(ResponsePolicy::Aggregate(AggregateOp::Min)),
        ));
        self.wait(conn, masters).await
    }

    async fn wait(&self, conn: &mut ClusterConnection, nodes: RoutingInfo) -> Result<(), Error> {
        let Some(inv) = &self.invalidations else {
            return Ok(());
        };
        let mut wait = redis::cmd("WAIT");
        wait.arg(inv.replicas).arg(
            u64::try_from(inv.timeout.as_millis())
                .unwrap_or(u64::MAX)
                .max(1),
        );
        let reply = conn.route_command(wait, nodes).await?;
        let redis::Value::Int(acknowledged) = reply else {
            return Err(Error::Corrupt(
                "WAIT answered something else than an integer",
            ));
        };
        let acknowledged = u32::try_from(acknowledged).unwrap_or(0);
        if acknowledged < inv.replicas {
            return Err(Error::NotReplicated {
                wanted: inv.replicas,
                acknowledged,
            });
        }
        Ok(())
    }

    fn guess(&self, groups: &[String]) -> Option<Vec<u64>> {
        groups.iter().map(|g| self.seen.get(g)).collect()
    }

    /// `GET key`, raw.
    async fn get_raw(&self, key: String) -> Result<Option<Vec<u8>>, Error> {
        let mut conn = self.connection();
        Ok(conn.get(key).await?)
    }

    /// `GET` of every key, all sent at once (one round trip of latency), in order.
    async fn get_all(&self, keys: &[String]) -> Result<Vec<Option<Vec<u8>>>, Error> {
        try_join_all(keys.iter().map(|k| self.get_raw(k.clone()))).await
    }

    /// Seeds the version at `key` (replacing a damaged value, else only if still
    /// missing) and reads it back: one pipeline on the key's node.
    async fn seed(&self, key: &str, ttl: Option<Duration>, damaged: bool) -> Result<u64, Error> {
        let mut conn = self.connection();
        let mut pipe = redis::pipe();
        let set = pipe.cmd("SET").arg(key).arg(version_seed());
        if !damaged {
            set.arg("NX");
        }
        if let Some(ttl) = ttl {
            set.arg("EX").arg(ttl.as_secs());
        }
        set.ignore();
        pipe.cmd("GET").arg(key);
        let (raw,): (Option<Vec<u8>>,) = pipe.query_async(&mut conn).await?;
        raw.as_deref()
            .and_then(parse_version)
            .ok_or(Error::Corrupt("a version could not be seeded"))
    }

    /// Reads every version of `page` (groups, then scopes), seeding missing or damaged
    /// ones in one more round trip.
    async fn read_versions(&self, page: PageKey<'_>) -> Result<Vec<u64>, Error> {
        let keys = crate::redis_store::keys::versions(&self.namespace, page);
        let raw = self.get_all(&keys).await?;
        let versions = self.complete_versions(page, &keys, &raw).await?;
        self.seen.remember(page.groups, &versions);
        Ok(versions)
    }

    /// The versions read as `raw` (groups, then scopes), with the missing or damaged
    /// ones seeded, all at once: one more round trip if any is.
    async fn complete_versions(
        &self,
        page: PageKey<'_>,
        keys: &[String],
        raw: &[Option<Vec<u8>>],
    ) -> Result<Vec<u64>, Error> {
        let n = page.groups.len();
        try_join_all(raw.iter().enumerate().map(|(i, raw)| {
            let key = &keys[i];
            async move {
                if let Some(v) = raw.as_deref().and_then(parse_version) {
                    return Ok(v);
                }
                let ttl = if i < n {
                    None
                } else {
                    page.scopes[i - n].ttl()
                };
                self.seed(key, ttl, raw.is_some()).await
            }
        }))
        .await
    }

    /// `SADD` the page to the tag, and make the tag live as long as its longest page:
    /// one pipeline on the tag's node.
    async fn tag(&self, tag: &str, hash: &str, secs: u64) -> Result<(), Error> {
        let mut conn = self.connection();
        let key = self.tag_key(tag);
        let mut pipe = redis::pipe();
        pipe.cmd("SADD").arg(&key).arg(hash).ignore();
        // EXPIRE NX/GT: Redis 7.
        pipe.cmd("EXPIRE").arg(&key).arg(secs).arg("NX").ignore();
        pipe.cmd("EXPIRE").arg(&key).arg(secs).arg("GT").ignore();
        let () = pipe.query_async(&mut conn).await?;
        Ok(())
    }

    /// `UNLINK` of keys that share one hash slot.
    async fn unlink(&self, keys: Vec<String>) -> Result<u64, Error> {
        let mut conn = self.invalidation_connection();
        Ok(redis::cmd("UNLINK")
            .arg(&keys)
            .query_async(&mut conn)
            .await?)
    }
}

impl RedisClusterStoreBuilder {
    /// The namespace every key lives under (default `cache-page`).
    ///
    /// ```
    /// # let b = cache_page_runtime::RedisClusterStore::builder(["redis://127.0.0.1:7000"]);
    /// let b = b.namespace("shop");
    /// # let _ = b;
    /// ```
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = namespace.into();
        self
    }

    /// How long to wait for a connection to a node (default 1 s).
    ///
    /// ```
    /// # use std::time::Duration;
    /// # let b = cache_page_runtime::RedisClusterStore::builder(["redis://127.0.0.1:7000"]);
    /// let b = b.connect_timeout(Duration::from_millis(500));
    /// # let _ = b;
    /// ```
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long to wait for the answer to a command, redirections and retries
    /// included (default 250 ms). A request never waits longer than this for the
    /// cache; past it the page is served uncached.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # let b = cache_page_runtime::RedisClusterStore::builder(["redis://127.0.0.1:7000"]);
    /// let b = b.command_timeout(Duration::from_millis(100));
    /// # let _ = b;
    /// ```
    pub fn command_timeout(mut self, timeout: Duration) -> Self {
        self.command_timeout = timeout;
        self
    }

    /// How many times a command is retried after a lost connection or a moved slot,
    /// within the command timeout (default 3). Retries wait 10 ms to 200 ms, growing.
    ///
    /// ```
    /// # let b = cache_page_runtime::RedisClusterStore::builder(["redis://127.0.0.1:7000"]);
    /// let b = b.retries(1);
    /// # let _ = b;
    /// ```
    pub fn retries(mut self, retries: u32) -> Self {
        self.retries = retries;
        self
    }

    /// After each invalidation, waits until `replicas` replicas of the node holding the
    /// version acknowledge it (Redis `WAIT`), for at most `timeout`; an invalidation
    /// fewer acknowledge returns [`Error::NotReplicated`] (default: no wait).
    ///
    /// Replication in Redis Cluster is asynchronous: without this, an invalidation
    /// that returned `Ok` can be lost if its node fails over before a replica has it,
    /// and pages from before would be served again. Invalidations then go through a
    /// connection of their own, so a `WAIT` never holds up a request's lookup. `WAIT`
    /// usually answers within a millisecond or two, but can take up to a second while
    /// a replica has just connected; the cache's own
    /// [`timeout`](crate::CacheBuilder::timeout) (500 ms by default) bounds every
    /// invalidation too, so raise it with `timeout`. Version bumps wait on the node of
    /// their version, key deletions on the node of their page, tag deletions on every
    /// master (the fewest acknowledgements count).
    ///
    /// ```
    /// # use std::time::Duration;
    /// # let b = cache_page_runtime::RedisClusterStore::builder(["redis://127.0.0.1:7000"]);
    /// let b = b.wait_for_replicas(1, Duration::from_millis(200));
    /// # let _ = b;
    /// ```
    pub fn wait_for_replicas(mut self, replicas: u32, timeout: Duration) -> Self {
        self.wait_for_replicas = (replicas > 0).then_some((replicas, timeout));
        self
    }

    /// Builds the store. The connection is made on first use and remade after
    /// failures, so this fails only on a malformed URL or an empty node list.
    ///
    /// ```
    /// let err = cache_page_runtime::RedisClusterStore::builder(["not a url"]).build();
    /// assert!(err.is_err());
    /// ```
    pub fn build(self) -> Result<RedisClusterStore, Error> {
        let client = ClusterClient::builder(self.nodes.iter().map(String::as_str))
            .connection_timeout(self.connect_timeout)
            .response_timeout(self.command_timeout)
            .overall_response_timeout(Some(self.command_timeout))
            .retries(self.retries)
            .min_retry_wait(10)
            .max_retry_wait(200)
            .retry_wait_formula(20, 2)
            .build()?;
        // `get_pending_async_connection_with_config` takes its timeouts from here.
        let config = ClusterConfig::new()
            .set_connection_timeout(self.connect_timeout)
            .set_response_timeout(self.command_timeout);
        // Invalidations that wait for replicas answer within the wait, plus the usual
        // command timeout.
        let invalidations = match self.wait_for_replicas {
            None => None,
            Some((replicas, timeout)) => {
                let answer = self.command_timeout + timeout;
                Some(Invalidations {
                    client: ClusterClient::builder(self.nodes.iter().map(String::as_str))
                        .connection_timeout(self.connect_timeout)
                        .response_timeout(answer)
                        .overall_response_timeout(Some(answer))
                        .retries(self.retries)
                        .min_retry_wait(10)
                        .max_retry_wait(200)
                        .retry_wait_formula(20, 2)
                        .build()?,
                    config: ClusterConfig::new()
                        .set_connection_timeout(self.connect_timeout)
                        .set_response_timeout(answer),
                    conn: Arc::default(),
                    replicas,
                    timeout,
                })
            }
        };
        Ok(RedisClusterStore {
            client,
            config,
            conn: Arc::default(),
            invalidations,
            namespace: self.namespace.into(),
            seen: Arc::default(),
            bump: Arc::new(Script::new(BUMP)),
            decoded: Arc::new(Decoded::new()),
            command_timeout: self.command_timeout,
        })
    }
}

impl Store for RedisClusterStore {
    fn lookup<'a>(&'a self, page: PageKey<'a>) -> BoxFuture<'a, Result<Lookup, Error>> {
        // Not `timed`, as `RedisStore::lookup`: the hit path's future.
        Box::pin(async move {
            let n = page.groups.len();
            if let Some(guess) = self.guess(page.groups) {
                // One round trip: every version and the entry at the guessed ones, each
                // a GET of its own, all at once.
                let hash = page.hash_at(guess.iter().copied());
                let keys = crate::redis_store::keys::versions(&self.namespace, page);
                let (raw_versions, raw_entry) =
                    join(self.get_all(&keys), self.get_raw(self.page_key(&hash))).await;
                let (raw_versions, raw_entry) = (raw_versions?, raw_entry?);
                let groups_as_guessed = raw_versions[..n]
                    .iter()
                    .zip(&guess)
                    .all(|(raw, guess)| raw.as_deref().and_then(parse_version) == Some(*guess));
                if groups_as_guessed {
                    // The entry read is the page's. Scope versions never read before
                    // (a new URL) are seeded now; an entry, if any, recorded others
                    // and will not be served.
                    let versions = self.complete_versions(page, &keys, &raw_versions).await?;
                    let entry = self.decoded.decode(&hash, raw_entry);

                    return Ok(Lookup {
                        hash,
                        entry,
                        scopes: versions[n..].to_vec(),
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
        })
    }

    fn get<'a>(&'a self, hash: &'a str) -> BoxFuture<'a, Result<Option<Arc<Entry>>, Error>> {
        timed(self.command_timeout, async move {
            let raw = self.get_raw(self.page_key(hash)).await?;
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
            let mut conn = self.connection();
            let secs = entry.store_ttl().as_secs().max(1);
            let () = redis::cmd("SET")
                .arg(self.page_key(hash))
                .arg(entry.encode().as_ref())
                .arg("EX")
                .arg(secs)
                .query_async(&mut conn)
                .await?;
            // The versions of the page's path and URL live at least as long as it
            // (EXPIRE GT: Redis 7), each on its own node, at once; and the tags only
            // after the page: a tag deleted in between then either deletes the page
            // or has not read this hash yet and keeps it.
            let path = entry
                .origin
                .split_once('?')
                .map_or(entry.origin.as_str(), |(p, _)| p);
            let extend = [Version::Path(path), Version::Url(&entry.origin)].map(|version| {
                let mut conn = self.connection();
                let key = self.version_key(version);
                async move {
                    redis::cmd("EXPIRE")
                        .arg(key)
                        .arg(secs)
                        .arg("GT")
                        .query_async::<u64>(&mut conn)
                        .await
                }
            });
            let (extended, tagged) = futures_util::future::join(
                try_join_all(extend),
                try_join_all(tags.iter().map(|tag| self.tag(tag, hash, secs))),
            )
            .await;
            extended?;
            tagged?;
            Ok(())
        })
    }

    fn remove<'a>(&'a self, hash: &'a str) -> BoxFuture<'a, Result<bool, Error>> {
        timed(self.invalidation_timeout(), async move {
            let mut conn = self.invalidation_connection();
            let key = self.page_key(hash);
            let n: u64 = conn.del(&key).await?;
            self.replicated(&mut conn, &key).await?;
            Ok(n > 0)
        })
    }

    fn bump<'a>(&'a self, version: Version<'a>) -> BoxFuture<'a, Result<u64, Error>> {
        timed(self.invalidation_timeout(), async move {
            let mut conn = self.invalidation_connection();
            let key = self.version_key(version);
            let seed = version_seed();
            let ttl = version.bumped_ttl().map_or(0, |t| t.as_secs());
            // EVALSHA, else EVAL on the key's node: `Script::invoke_async` would load
            // the script with SCRIPT LOAD on every node, which fails while one is down.
            let evalsha: Result<u64, redis::RedisError> = redis::cmd("EVALSHA")
                .arg(self.bump.get_hash())
                .arg(1)
                .arg(&key)
                .arg(seed)
                .arg(ttl)
                .query_async(&mut conn)
                .await;
            let v = match evalsha {
                Err(err) if err.kind() == ErrorKind::Server(ServerErrorKind::NoScript) => {
                    redis::cmd("EVAL")
                        .arg(BUMP)
                        .arg(1)
                        .arg(&key)
                        .arg(seed)
                        .arg(ttl)
                        .query_async(&mut conn)
                        .await?
                }
                other => other?,
            };
            if let Version::Group(g) = version {
                self.seen.insert(g, v);
            }
            self.replicated(&mut conn, &key).await?;
            Ok(v)
        })
    }

    /// The bump, then the record of the version before it: the group's version and its
    /// record live on different nodes, so the two cannot be one script. A request
    /// between the two misses instead of being served the old page.
    fn bump_soft<'a>(&'a self, group: &'a str) -> BoxFuture<'a, Result<u64, Error>> {
        timed(self.command_timeout, async move {
            let after = self.bump(Version::Group(group)).await?;
            // A seeded version has no pages before it: its record leads nowhere.
            let record = format!(
                "{} {after} {}",
                after - 1,
                unix_ms(std::time::SystemTime::now())
            );
            let () = self
                .connection()
                .set_ex(
                    crate::redis_store::keys::soft(&self.namespace, group),
                    record,
                    SOFT_WINDOW.as_secs(),
                )
                .await?;
            Ok(after)
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
            let keys: Vec<String> = page
                .groups
                .iter()
                .map(|g| self.version_key(Version::Group(g)))
                .chain(
                    page.groups
                        .iter()
                        .map(|g| crate::redis_store::keys::soft(&self.namespace, g)),
                )
                .collect();
            let raw = self.get_all(&keys).await?;
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
            let mut conn = self.connection();
            let ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
            let set: Option<String> = redis::cmd("SET")
                .arg(self.lock_key(hash))
                .arg(1)
                .arg("NX")
                .arg("PX")
                .arg(ms)
                .query_async(&mut conn)
                .await?;
            Ok(set.is_some())
        })
    }

    fn unlock<'a>(&'a self, hash: &'a str) -> BoxFuture<'a, Result<(), Error>> {
        timed(self.command_timeout, async move {
            let mut conn = self.connection();
            let _: u64 = conn.del(self.lock_key(hash)).await?;
            Ok(())
        })
    }

    fn delete_tag<'a>(&'a self, tag: &'a str) -> BoxFuture<'a, Result<u64, Error>> {
        timed(self.invalidation_timeout(), async move {
            let mut conn = self.invalidation_connection();
            let key = self.tag_key(tag);
            let hashes: Vec<String> = conn.smembers(&key).await?;
            if hashes.is_empty() {
                return Ok(0);
            }
            // The pages live in slots of their own: one UNLINK per slot, never one
            // command across slots.
            let mut by_slot: HashMap<Slot, Vec<String>> = HashMap::new();
            for h in &hashes {
                let page = self.page_key(h);
                by_slot.entry(Slot::for_key(&page)).or_default().push(page);
            }
            let counts: Vec<Result<u64, Error>> = stream::iter(by_slot.into_values())
                .map(|keys| self.unlink(keys))
                .buffer_unordered(DELETE_CONCURRENCY)
                .collect()
                .await;
            let deleted = counts.into_iter().sum::<Result<u64, Error>>()?;
            // Only the members read are removed, so pages tagged meanwhile stay indexed.
            let _: u64 = redis::cmd("SREM")
                .arg(&key)
                .arg(&hashes)
                .query_async(&mut conn)
                .await?;
            self.replicated_everywhere(&mut conn).await?;
            Ok(deleted)
        })
    }
}
