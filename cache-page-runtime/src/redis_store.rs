//! `RedisStore`: entries and group versions in Redis, over one multiplexed,
//! auto-reconnecting connection.
//!
//! Key layout, under one namespace (default `cache-page`):
//!
//! | key                              | type    | TTL             |
//! |----------------------------------|---------|-----------------|
//! | `<namespace>:page:<md5 hex>`     | string  | the page's timeout |
//! | `<namespace>:version:<group>`    | integer | none            |

use std::{
    collections::HashMap,
    sync::{Arc, RwLock},
    time::Duration,
};

use bytes::Bytes;
use redis::{
    AsyncCommands, Client, Script,
    aio::{ConnectionManager, ConnectionManagerConfig},
};

use crate::{
    Entry, Error,
    key::hash_key,
    store::{BoxFuture, Lookup, PageKey, Store, version_seed},
};

/// Moves a group to its next version in one command: `INCR` when the version exists,
/// otherwise a fresh seed (never `INCR` from nothing, which would start again at 1 and
/// could reach entries invalidated long ago).
const BUMP: &str = r"
if redis.call('EXISTS', KEYS[1]) == 1 then
  return redis.call('INCR', KEYS[1])
end
redis.call('SET', KEYS[1], ARGV[1])
return tonumber(ARGV[1])
";

/// The Redis store.
///
/// A hit costs one round trip: the versions of the page's groups are read in the same
/// pipeline as the entry stored at the versions this process saw last; only when a
/// version moved (another process invalidated the group) is a second read needed.
///
/// The connection is made lazily and re-made by itself after a failure, so an
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
    conn: ConnectionManager,
    namespace: Arc<str>,
    /// The last version this process saw of each group: the guess that lets a hit
    /// read version and entry in one round trip.
    seen: Arc<RwLock<HashMap<String, u64>>>,
    bump: Arc<Script>,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}

/// Builds a [`RedisStore`].
#[derive(Debug, Clone)]
pub struct RedisStoreBuilder {
    url: String,
    namespace: String,
    connect_timeout: Duration,
    command_timeout: Duration,
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
        }
    }

    /// The namespace every key of this store lives under.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The Redis key of the entry whose hash is `hash`.
    pub fn page_key(&self, hash: &str) -> String {
        format!("{}:page:{}", self.namespace, hash)
    }

    /// The Redis key holding the version of `group`.
    pub fn version_key(&self, group: &str) -> String {
        format!("{}:version:{}", self.namespace, group)
    }

    /// A clone of the underlying connection, for commands of your own.
    pub fn connection(&self) -> ConnectionManager {
        self.conn.clone()
    }

    fn guess(&self, groups: &[String]) -> Option<Vec<u64>> {
        let seen = self.seen.read().unwrap_or_else(|e| e.into_inner());
        groups.iter().map(|g| seen.get(g).copied()).collect()
    }

    fn remember(&self, groups: &[String], versions: &[u64]) {
        let mut seen = self.seen.write().unwrap_or_else(|e| e.into_inner());
        for (g, v) in groups.iter().zip(versions) {
            match seen.get_mut(g) {
                Some(old) => *old = *v,
                None => {
                    seen.insert(g.clone(), *v);
                }
            }
        }
    }

    fn hash(page: PageKey<'_>, versions: &[u64]) -> String {
        let pairs: Vec<(&str, u64)> = page
            .groups
            .iter()
            .map(String::as_str)
            .zip(versions.iter().copied())
            .collect();
        hash_key(page.prefix, &pairs, page.key)
    }

    /// Reads the versions of `groups`, seeding the missing ones.
    async fn read_versions(&self, groups: &[String]) -> Result<Vec<u64>, Error> {
        let keys: Vec<String> = groups.iter().map(|g| self.version_key(g)).collect();
        let mut conn = self.conn.clone();
        let raw: Vec<Option<Vec<u8>>> =
            redis::cmd("MGET").arg(&keys).query_async(&mut conn).await?;
        let mut versions = Vec::with_capacity(groups.len());
        for (key, raw) in keys.iter().zip(raw) {
            let v = match raw {
                Some(raw) => parse_version(&raw)?,
                None => self.seed(key).await?,
            };
            versions.push(v);
        }
        self.remember(groups, &versions);
        Ok(versions)
    }

    /// Sets a missing version to a fresh seed (unless another process just did) and
    /// returns the version now in place.
    async fn seed(&self, key: &str) -> Result<u64, Error> {
        let mut conn = self.conn.clone();
        let (raw,): (Option<Vec<u8>>,) = redis::pipe()
            .cmd("SET")
            .arg(key)
            .arg(version_seed())
            .arg("NX")
            .ignore()
            .cmd("GET")
            .arg(key)
            .query_async(&mut conn)
            .await?;
        parse_version(&raw.ok_or(Error::Corrupt("version vanished while seeding"))?)
    }

    async fn get_entry(&self, hash: &str) -> Result<Option<Arc<Entry>>, Error> {
        let mut conn = self.conn.clone();
        let raw: Option<Vec<u8>> = conn.get(self.page_key(hash)).await?;
        Ok(decode(raw))
    }
}

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

    /// Builds the store. The connection is made on first use and re-made after
    /// failures, so this fails only on a malformed URL.
    pub fn build(self) -> Result<RedisStore, Error> {
        let client = Client::open(self.url.as_str())?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.connect_timeout))
            .set_response_timeout(Some(self.command_timeout))
            .set_number_of_retries(2)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_secs(1));
        let conn = ConnectionManager::new_lazy_with_config(client, config)?;
        Ok(RedisStore {
            conn,
            namespace: self.namespace.into(),
            seen: Arc::default(),
            bump: Arc::new(Script::new(BUMP)),
        })
    }
}

fn parse_version(raw: &[u8]) -> Result<u64, Error> {
    std::str::from_utf8(raw)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or(Error::Corrupt("group version is not an integer"))
}

/// A damaged or foreign value reads as a miss; the next store overwrites it.
fn decode(raw: Option<Vec<u8>>) -> Option<Arc<Entry>> {
    let raw = raw?;
    match Entry::decode(Bytes::from(raw)) {
        Ok(entry) => Some(Arc::new(entry)),
        Err(err) => {
            tracing::warn!(error = %err, "ignoring a damaged cache entry");
            None
        }
    }
}

impl Store for RedisStore {
    fn lookup<'a>(&'a self, page: PageKey<'a>) -> BoxFuture<'a, Result<Lookup, Error>> {
        Box::pin(async move {
            if page.groups.is_empty() {
                let hash = Self::hash(page, &[]);
                let entry = self.get_entry(&hash).await?;
                return Ok(Lookup { hash, entry });
            }
            if let Some(guess) = self.guess(page.groups) {
                // One round trip: the versions and the entry at the guessed versions.
                let hash = Self::hash(page, &guess);
                let keys: Vec<String> = page.groups.iter().map(|g| self.version_key(g)).collect();
                let mut conn = self.conn.clone();
                let (raw_versions, raw_entry): (Vec<Option<Vec<u8>>>, Option<Vec<u8>>) =
                    redis::pipe()
                        .cmd("MGET")
                        .arg(&keys)
                        .cmd("GET")
                        .arg(self.page_key(&hash))
                        .query_async(&mut conn)
                        .await?;
                let current: Option<Vec<u64>> = raw_versions
                    .iter()
                    .map(|r| r.as_deref().and_then(|r| parse_version(r).ok()))
                    .collect();
                if current.as_deref() == Some(guess.as_slice()) {
                    return Ok(Lookup {
                        hash,
                        entry: decode(raw_entry),
                    });
                }
            }
            // A version moved, is missing, or was never seen here: read them, then the
            // entry at the current versions.
            let versions = self.read_versions(page.groups).await?;
            let hash = Self::hash(page, &versions);
            let entry = self.get_entry(&hash).await?;
            Ok(Lookup { hash, entry })
        })
    }

    fn insert<'a>(
        &'a self,
        hash: &'a str,
        entry: Arc<Entry>,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(async move {
            let mut conn = self.conn.clone();
            let secs = ttl.as_secs().max(1);
            let () = conn
                .set_ex(self.page_key(hash), entry.encode().as_ref(), secs)
                .await?;
            Ok(())
        })
    }

    fn remove<'a>(&'a self, hash: &'a str) -> BoxFuture<'a, Result<bool, Error>> {
        Box::pin(async move {
            let mut conn = self.conn.clone();
            let n: u64 = conn.del(self.page_key(hash)).await?;
            Ok(n > 0)
        })
    }

    fn invalidate_group<'a>(&'a self, group: &'a str) -> BoxFuture<'a, Result<u64, Error>> {
        Box::pin(async move {
            let mut conn = self.conn.clone();
            let v: u64 = self
                .bump
                .key(self.version_key(group))
                .arg(version_seed())
                .invoke_async(&mut conn)
                .await?;
            self.remember(&[group.to_owned()], &[v]);
            Ok(v)
        })
    }

    fn group_version<'a>(&'a self, group: &'a str) -> BoxFuture<'a, Result<u64, Error>> {
        Box::pin(async move {
            let v = self.read_versions(&[group.to_owned()]).await?;
            Ok(v[0])
        })
    }
}
