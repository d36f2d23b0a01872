//! `Cache`: a store plus the settings that go with it, and the process-wide registry
//! that handlers and business logic reach it through.

use std::{
    collections::HashMap,
    sync::{Arc, OnceLock, RwLock},
    task::Poll,
    time::Duration,
};

use http::request::Parts;

use crate::{
    Error, MemoryStore, PageConfig, Store,
    breaker::{Admit, Breaker},
    flight::Flights,
    key::canonical_url,
    store::{PageKey, Version},
    telemetry,
};

/// A handle on a store and its settings. Cheap to clone; clones share everything.
///
/// Install one at start-up with [`install`] and every `#[cache_page]` handler uses it;
/// with none installed, a [`MemoryStore`] is used. A handler names another with
/// `store = "name"` after [`install_named`]; a request carrying a `Cache` in its
/// extensions (`Router::layer(Extension(cache))`) uses that one instead of the default.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use cache_page_runtime::{Cache, MemoryStore};
///
/// let cache = Cache::builder(MemoryStore::new())
///     .timeout(Duration::from_millis(100))
///     .max_body_bytes(1 << 20)
///     .build();
/// cache_page_runtime::install(cache).expect("installed once, at start-up");
/// ```
#[derive(Clone, Debug)]
pub struct Cache {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    store: Arc<dyn Store>,
    /// The store again when it is a [`MemoryStore`]: its lookups are answered at once
    /// and cannot fail, so they skip the breaker, the timer and the boxed future.
    in_process: Option<MemoryStore>,
    settings: Settings,
    flights: Arc<Flights>,
    breaker: Breaker,
}

#[derive(Clone, Debug)]
struct Settings {
    timeout: Duration,
    max_body_bytes: usize,
    cache_status: Option<&'static str>,
    single_flight: bool,
    coalesce_wait: Duration,
    lock_wait: Option<Duration>,
    breaker_threshold: u32,
    breaker_cooldown: Duration,
}

/// Builds a [`Cache`].
///
/// ```
/// use std::time::Duration;
/// use cache_page_runtime::{Cache, MemoryStore};
///
/// let cache = Cache::builder(MemoryStore::new())
///     .timeout(Duration::from_millis(200))
///     .cache_status(Some("edge"))
///     .circuit_breaker(5, Duration::from_secs(1))
///     .lock_across_instances(Duration::from_secs(5))
///     .build();
/// assert_eq!(cache.cache_status(), Some("edge"));
/// ```
#[derive(Debug)]
pub struct CacheBuilder {
    store: Arc<dyn Store>,
    in_process: Option<MemoryStore>,
    settings: Settings,
}

impl Cache {
    /// A cache on `store` with the default settings of [`builder`](Self::builder).
    pub fn new(store: impl Store) -> Self {
        Self::builder(store).build()
    }

    /// A cache on a new [`MemoryStore`].
    pub fn memory() -> Self {
        Self::new(MemoryStore::new())
    }

    /// Starts a builder. Defaults: store operations time out after 500 ms, bodies up
    /// to 8 MiB are stored, responses carry a `Cache-Status` header named
    /// `cache-page`, concurrent misses of a page run its handler once per process
    /// (followers wait up to 10 s), and there is no lock across instances.
    pub fn builder(store: impl Store) -> CacheBuilder {
        let in_process = (&store as &dyn std::any::Any)
            .downcast_ref::<MemoryStore>()
            .cloned();
        CacheBuilder {
            store: Arc::new(store),
            in_process,
            settings: Settings {
                timeout: Duration::from_millis(500),
                max_body_bytes: 8 * 1024 * 1024,
                cache_status: Some("cache-page"),
                single_flight: true,
                coalesce_wait: Duration::from_secs(10),
                lock_wait: None,
                breaker_threshold: 3,
                breaker_cooldown: Duration::from_secs(2),
            },
        }
    }

    /// The store behind this cache.
    pub fn store(&self) -> &dyn Store {
        &*self.inner.store
    }

    /// The store, when it is the in-process one.
    pub(crate) fn in_process(&self) -> Option<&MemoryStore> {
        self.inner.in_process.as_ref()
    }

    /// How long a request waits for the store before serving uncached.
    pub fn timeout(&self) -> Duration {
        self.inner.settings.timeout
    }

    /// Largest body stored; larger responses pass through uncached.
    pub fn max_body_bytes(&self) -> usize {
        self.inner.settings.max_body_bytes
    }

    /// The cache name written in `Cache-Status`, if the header is on.
    pub fn cache_status(&self) -> Option<&'static str> {
        self.inner.settings.cache_status
    }

    /// Whether concurrent misses of one page run its handler once per process.
    pub fn single_flight(&self) -> bool {
        self.inner.settings.single_flight
    }

    /// How long a request waits for another one running the same page's handler.
    pub fn coalesce_wait(&self) -> Duration {
        self.inner.settings.coalesce_wait
    }

    /// How long a miss waits for another instance holding the page's lock, if the
    /// lock across instances is on.
    pub fn lock_wait(&self) -> Option<Duration> {
        self.inner.settings.lock_wait
    }

    pub(crate) fn flights(&self) -> &Arc<Flights> {
        &self.inner.flights
    }

    /// Invalidates every page of `group` in this cache, in O(1). Returns once the new
    /// version is in the store, so no request that starts afterwards is served a page
    /// stored before.
    ///
    /// # Errors
    ///
    /// If the store fails or does not answer within the timeout. After
    /// [`Error::Timeout`] the outcome is unknown (the version may have been bumped,
    /// only the answer came late); calling it again is safe, a bump being idempotent
    /// in effect. The other invalidations fail the same way.
    pub async fn invalidate_group(&self, group: &str) -> Result<u64, Error> {
        self.bump(Version::Group(group)).await
    }

    /// Invalidates every page of `group` in O(1), softly: no request is served a page
    /// from before as fresh, but a handler with a `grace` serves it stale, for at most
    /// `grace` seconds after this call, while the first request for it rebuilds it in
    /// the background; so invalidating a large group does not send every request for
    /// its pages to the handlers at once. A handler without `grace` misses, as after
    /// [`invalidate_group`](Self::invalidate_group).
    ///
    /// The stale pages are those stored at the group's version before this call,
    /// remembered for [`SOFT_WINDOW`](crate::SOFT_WINDOW). Finding one costs a miss one
    /// more round trip to the store (only on handlers with a `grace`). Each instance
    /// rebuilds a page once, as for a page past its timeout. On a custom store that does not implement
    /// [`Store::bump_soft`](crate::Store::bump_soft), this is `invalidate_group`.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), cache_page_runtime::Error> {
    /// let cache = cache_page_runtime::Cache::memory();
    /// let before = cache.group_version("views").await?;
    /// assert_eq!(cache.invalidate_group_soft("views").await?, before + 1);
    /// # Ok(()) }
    /// ```
    pub async fn invalidate_group_soft(&self, group: &str) -> Result<u64, Error> {
        match self.with_timeout(self.store().bump_soft(group)).await {
            Ok(new) => {
                telemetry::invalidated("group", group, new);
                Ok(new)
            }
            Err(err) => {
                telemetry::error("invalidate", &err);
                Err(err)
            }
        }
    }

    /// Invalidates every page of a URL path, whatever its query string and request
    /// headers, in O(1).
    ///
    /// The path may be given as a request sends it or as decoded text: `/caf%C3%A9`,
    /// `/caf%c3%a9` and `/café` name one path (see
    /// [`canonical_path`](crate::keys::canonical_path)).
    ///
    /// A page is reached through the path of the request that stored it. When a key
    /// function makes several paths share one page (such as
    /// [`query_key`](crate::keys::query_key), which leaves the path out), the page
    /// belongs to the path it was stored from, and invalidating another of those paths
    /// leaves it: invalidate such pages by group, by prefix, or with
    /// [`invalidate_key`](Self::invalidate_key) or
    /// [`invalidate_request`](Self::invalidate_request).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), cache_page_runtime::Error> {
    /// let cache = cache_page_runtime::Cache::memory();
    /// cache.invalidate_path("/products/42").await?;
    /// # Ok(()) }
    /// ```
    pub async fn invalidate_path(&self, path: &str) -> Result<u64, Error> {
        self.bump(Version::Path(&crate::key::canonical_path(path)))
            .await
    }

    /// Invalidates one URL (`/path?query`; a scheme and host, if given, are ignored):
    /// every page of that path with that query string, whatever the request headers,
    /// in O(1). The order and encoding of query parameters do not matter, nor the
    /// encoding of the path (see [`invalidate_path`](Self::invalidate_path)).
    ///
    /// A page is reached through the URL of the request that stored it. When a key
    /// function makes several URLs share one page (as
    /// [`query_params`](crate::keys::query_params) does for `/items?page=2` and
    /// `/items?page=2&utm_source=x`), the page belongs to the URL it was stored from,
    /// and invalidating another of those URLs leaves it: invalidate such pages by group,
    /// by prefix, or with [`invalidate_key`](Self::invalidate_key) or
    /// [`invalidate_request`](Self::invalidate_request), which compute the key as the
    /// handler does.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), cache_page_runtime::Error> {
    /// let cache = cache_page_runtime::Cache::memory();
    /// cache.invalidate_url("/products?page=2&sort=price").await?;
    /// # Ok(()) }
    /// ```
    pub async fn invalidate_url(&self, url: &str) -> Result<u64, Error> {
        // Text a URL cannot hold as it is (`/café`, a space) is taken as its UTF-8
        // percent-encoding, as a browser sends it.
        let encoded = encode_text(url);
        let uri: http::Uri = encoded
            .parse()
            .map_err(|_| Error::InvalidUrl(url.to_owned()))?;
        let url = canonical_url(uri.path(), uri.query());
        self.bump(Version::Url(&url)).await
    }

    /// Invalidates every page stored under a handler `prefix` (the attribute's
    /// `prefix = "…"`), in O(1), whatever its key, groups and request headers.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), cache_page_runtime::Error> {
    /// let cache = cache_page_runtime::Cache::memory();
    /// cache.invalidate_prefix("v2").await?;
    /// # Ok(()) }
    /// ```
    pub async fn invalidate_prefix(&self, prefix: &str) -> Result<u64, Error> {
        self.bump(Version::Prefix(prefix)).await
    }

    /// Deletes the page a key function produced: `key` is the key function's output,
    /// `prefix` and `groups` those of the handler (computed groups as they were for
    /// that request). Every header variant of the page goes with it. Returns whether
    /// there was one.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), cache_page_runtime::Error> {
    /// let cache = cache_page_runtime::Cache::memory();
    /// // For #[cache_page(timeout = 60, key = path_key, group = "views", prefix = "p")]:
    /// cache.invalidate_key("p", &["views"], "/products/42").await?;
    /// # Ok(()) }
    /// ```
    pub async fn invalidate_key(
        &self,
        prefix: &str,
        groups: &[&str],
        key: &str,
    ) -> Result<bool, Error> {
        let groups: Vec<String> = groups.iter().map(|g| (*g).to_owned()).collect();
        let page = PageKey {
            prefix,
            groups: &groups,
            key,
            caller: None,
            scopes: &[],
        };
        // A store's lookup reports its own timeouts as they come (it is the hit path's
        // future, kept lean): here they are timeouts like any other.
        let lookup = self
            .with_timeout(self.store().lookup(page))
            .await
            .map_err(|e| e.timed_out_after(self.inner.settings.timeout))?;
        self.with_timeout(self.store().remove(&lookup.hash)).await
    }

    /// Deletes the page a handler configured by `config` would serve for `request`
    /// (the caller builds the request; its key, prefix and groups are computed as for
    /// a real one).
    pub async fn invalidate_request(
        &self,
        config: &PageConfig,
        request: &Parts,
    ) -> Result<bool, Error> {
        let prefix = config.prefix.resolve(request);
        let groups = config.resolve_groups(request);
        let groups: Vec<&str> = groups.iter().map(String::as_str).collect();
        self.invalidate_key(&prefix, &groups, &(config.key)(request))
            .await
    }

    /// Deletes every page stored with `tag`, freeing their memory now (unlike versions,
    /// which leave old pages to expire). Returns how many were deleted.
    pub async fn invalidate_tag(&self, tag: &str) -> Result<u64, Error> {
        let deleted = self
            .with_timeout(self.store().delete_tag(tag))
            .await
            .inspect_err(|err| telemetry::error("invalidate", err))?;
        telemetry::invalidated("tag", tag, deleted);
        Ok(deleted)
    }

    async fn bump(&self, version: Version<'_>) -> Result<u64, Error> {
        match self.with_timeout(self.store().bump(version)).await {
            Ok(new) => {
                telemetry::invalidated(version.kind(), version.name(), new);
                Ok(new)
            }
            Err(err) => {
                telemetry::error("invalidate", &err);
                Err(err)
            }
        }
    }

    /// The current version of `group` (what its pages' keys are hashed with).
    pub async fn group_version(&self, group: &str) -> Result<u64, Error> {
        self.with_timeout(self.store().version(Version::Group(group)))
            .await
    }

    /// Whether the store is taken to be reachable: `false` while the circuit breaker
    /// is open after repeated failures (requests are then served uncached without
    /// calling the store).
    pub fn is_available(&self) -> bool {
        !self.inner.breaker.is_open()
    }

    /// A store call on the request path: refused at once while the circuit breaker
    /// is open, bounded by the timeout, and counted by the breaker.
    pub(crate) async fn guarded<T>(
        &self,
        fut: impl Future<Output = Result<T, Error>>,
    ) -> Result<T, Error> {
        let admit = self.inner.breaker.admit();
        if admit == Admit::No {
            return Err(Error::Unavailable);
        }
        // If this request is cancelled while it waits (a client went away), its probe
        // must not stay taken: the breaker would never close again.
        let mut pending = Pending(Some((&self.inner.breaker, admit)));
        let result = self.with_timeout(fut).await;
        pending.0 = None;
        // A damaged entry or one too large to keep says nothing of the store's health.
        let failed =
            matches!(&result, Err(err) if !matches!(err, Error::Corrupt(_) | Error::TooLarge));
        self.inner.breaker.record(admit, !failed);
        result
    }

    pub(crate) async fn with_timeout<T>(
        &self,
        fut: impl Future<Output = Result<T, Error>>,
    ) -> Result<T, Error> {
        let timeout = self.inner.settings.timeout;
        let mut fut = std::pin::pin!(fut);
        // Whether the future is parked on a wait that its store bounds itself, within
        // this timeout (see `bounded_wait`).
        let bounded = || bounded_wait::take().is_some_and(|bound| bound <= timeout);
        // An in-process store answers on the first poll: no timer is set for it (a
        // timer reads the clock and is registered, then cancelled, with the runtime).
        bounded_wait::take();
        if let Poll::Ready(out) =
            std::future::poll_fn(|cx| Poll::Ready(fut.as_mut().poll(cx))).await
        {
            return out;
        }
        // The future was polled just now and holds this task's waker; the deadline
        // runs from here, and the future is polled again only once it is woken. While
        // it waits on a bounded wait, no timer is registered; one is as soon as it
        // waits on anything else.
        let deadline = tokio::time::Instant::now() + timeout;
        // Boxed: a timer is set only here, on the slow path, and inline its room would
        // be part of every lookup's state, hits answered at once included.
        let sleep = || Box::pin(tokio::time::sleep_until(deadline));
        let mut timer = (!bounded()).then(sleep);
        let mut first = true;
        std::future::poll_fn(|cx| {
            if !std::mem::take(&mut first) {
                bounded_wait::take();
                if let Poll::Ready(out) = fut.as_mut().poll(cx) {
                    return Poll::Ready(out);
                }
                if timer.is_none() && !bounded() {
                    timer = Some(sleep());
                }
            }
            match timer.as_mut().map(|timer| timer.as_mut().poll(cx)) {
                Some(Poll::Ready(())) => Poll::Ready(Err(Error::Timeout(timeout))),
                _ => Poll::Pending,
            }
        })
        .await
    }
}

/// A store's word that the future [`Cache::with_timeout`] just polled is parked on a
/// wait the store bounds itself: the Redis store's read barrier, whose `PING` fails
/// within the command timeout, so that a hit waiting on it is released within two of
/// them (the `PING` out when it arrived, then its own). Set by the store where its
/// future returns `Pending`, read and cleared by `with_timeout` after each poll, on
/// the same thread: when the bound is within the cache's timeout, the hit needs no
/// timer of its own (a timer is registered with the runtime and cancelled, on every
/// such hit).
pub(crate) mod bounded_wait {
    use std::{cell::Cell, time::Duration};

    thread_local! {
        static BOUND: Cell<Option<Duration>> = const { Cell::new(None) };
    }

    /// The future being polled is parked on a wait that ends within `bound`.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn set(bound: Duration) {
        let _ = BOUND.try_with(|b| b.set(Some(bound)));
    }

    /// The bound set since the last call, if any; clears it.
    pub(crate) fn take() -> Option<Duration> {
        BOUND.try_with(Cell::take).ok().flatten()
    }
}

impl CacheBuilder {
    /// Longest wait for any store operation (default 500 ms). Past it, a request is
    /// served uncached and an invalidation returns [`Error::Timeout`] (and may still
    /// have taken effect). A Redis store's own command timeout (250 ms by default) is
    /// reported as the same [`Error::Timeout`] when it runs out first.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.settings.timeout = timeout;
        self
    }

    /// Largest body stored (default 8 MiB). Larger responses pass through untouched.
    pub fn max_body_bytes(mut self, n: usize) -> Self {
        self.settings.max_body_bytes = n;
        self
    }

    /// The name in the `Cache-Status` header (RFC 9211), or `None` to send no header.
    /// The cache's member goes after any the response already has (those of caches
    /// nearer the origin), which are kept; with `None` they are left alone.
    pub fn cache_status(mut self, name: Option<&'static str>) -> Self {
        self.settings.cache_status = name;
        self
    }

    /// Whether concurrent misses of one page run its handler once per process, the
    /// others waiting for its response (default on).
    pub fn single_flight(mut self, on: bool) -> Self {
        self.settings.single_flight = on;
        self
    }

    /// How long a request waits for another running the same page's handler before
    /// running it itself (default 10 s).
    pub fn coalesce_wait(mut self, wait: Duration) -> Self {
        self.settings.coalesce_wait = wait;
        self
    }

    /// After `failures` consecutive store failures or timeouts on the request path,
    /// stop calling the store for `cooldown` and serve uncached at once; then let one
    /// request probe it (default 3 failures, 2 s).
    pub fn circuit_breaker(mut self, failures: u32, cooldown: Duration) -> Self {
        self.settings.breaker_threshold = failures;
        self.settings.breaker_cooldown = cooldown;
        self
    }

    /// Turns on a lock in the store, so that concurrent misses of one page run its
    /// handler at most once per `wait` across every instance sharing the store (as
    /// nginx's `proxy_cache_lock`). A miss that finds the lock taken polls for the
    /// other instance's entry for at most `wait`, then runs the handler itself.
    ///
    /// Background refreshes (a page past its timeout within its `grace`, or one a
    /// soft invalidation superseded) take the same lock: one instance refreshes the
    /// page, the others go on serving the old one meanwhile.
    pub fn lock_across_instances(mut self, wait: Duration) -> Self {
        self.settings.lock_wait = Some(wait);
        self
    }

    /// Builds the cache.
    pub fn build(self) -> Cache {
        Cache {
            inner: Arc::new(Inner {
                store: self.store,
                in_process: self.in_process,
                breaker: Breaker::new(
                    self.settings.breaker_threshold,
                    self.settings.breaker_cooldown,
                ),
                settings: self.settings,
                flights: Arc::default(),
            }),
        }
    }
}

/// Abandons a store call's probe when the call is dropped before it ends.
struct Pending<'a>(Option<(&'a Breaker, Admit)>);

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        if let Some((breaker, admit)) = self.0.take() {
            breaker.abandon(admit);
        }
    }
}

static DEFAULT: OnceLock<Cache> = OnceLock::new();
static NAMED: OnceLock<RwLock<HashMap<String, Cache>>> = OnceLock::new();

/// Installs the default cache, once, at start-up.
///
/// Fails with [`Error::AlreadyInstalled`] if one was installed already, or if the
/// default cache was used before: by a request a cached handler served, or by a call
/// on it ([`default_cache`], or a free function such as [`invalidate_group`]). The
/// first use puts the in-process default in place for good, and what it did (an
/// invalidation, say) went to that in-process cache, not to the store installed later.
/// Install before serving and before any such call.
///
/// ```
/// use cache_page_runtime::{Cache, MemoryStore};
///
/// cache_page_runtime::install(Cache::new(MemoryStore::new())).unwrap();
/// assert!(cache_page_runtime::install(Cache::memory()).is_err());
/// ```
pub fn install(cache: Cache) -> Result<(), Error> {
    DEFAULT.set(cache).map_err(|_| Error::AlreadyInstalled)
}

/// Installs a cache under `name`, for handlers that say `store = "name"`. Installing a
/// name again replaces the cache it names.
///
/// Until a name is installed, the handlers that name it serve uncached, and the
/// first of their requests logs a warning (once per name).
///
/// ```
/// use cache_page_runtime::Cache;
///
/// cache_page_runtime::install_named("sessions", Cache::memory());
/// assert!(cache_page_runtime::named_cache("sessions").is_some());
/// ```
pub fn install_named(name: impl Into<String>, cache: Cache) {
    let mut named = NAMED
        .get_or_init(RwLock::default)
        .write()
        .unwrap_or_else(|e| e.into_inner());
    named.insert(name.into(), cache);
}

/// The default cache: the one [`install`]ed, or an in-process one. The first call
/// fixes it: an [`install`] after it fails.
///
/// ```
/// // With nothing installed, handlers cache in process.
/// let cache = cache_page_runtime::default_cache();
/// assert!(cache.is_available());
/// ```
pub fn default_cache() -> &'static Cache {
    DEFAULT.get_or_init(Cache::memory)
}

/// The cache installed under `name`.
///
/// ```
/// use cache_page_runtime::{Cache, named_cache};
///
/// assert!(named_cache("reports").is_none());
/// cache_page_runtime::install_named("reports", Cache::memory());
/// assert!(named_cache("reports").is_some());
/// ```
pub fn named_cache(name: &str) -> Option<Cache> {
    let named = NAMED.get()?.read().unwrap_or_else(|e| e.into_inner());
    named.get(name).cloned()
}

/// Invalidates every page of `group` in the default cache, in O(1) whatever the number
/// of pages: one command bumps the group's version, and pages stored at the old version
/// are never served again (they expire on their own timeout).
///
/// Returns once the new version is in the store. Fails if the store cannot be
/// reached or does not answer in time, so business logic can tell an invalidation
/// that may not have happened: after [`Error::Timeout`] the outcome is unknown (it
/// may have taken effect), and calling it again is safe, a bump being idempotent in
/// effect.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), cache_page_runtime::Error> {
/// // After the products changed:
/// cache_page_runtime::invalidate_group("views").await?;
/// # Ok(()) }
/// ```
pub async fn invalidate_group(group: &str) -> Result<(), Error> {
    default_cache().invalidate_group(group).await.map(|_| ())
}

/// Invalidates every page of `group` in the default cache softly: pages from before
/// are served stale, within their handler's `grace`, while they are rebuilt. See
/// [`Cache::invalidate_group_soft`].
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), cache_page_runtime::Error> {
/// cache_page_runtime::invalidate_group_soft("views").await?;
/// # Ok(()) }
/// ```
pub async fn invalidate_group_soft(group: &str) -> Result<(), Error> {
    default_cache()
        .invalidate_group_soft(group)
        .await
        .map(|_| ())
}

/// Invalidates every page of a URL path in the default cache, whatever its query
/// string and headers, in O(1). See [`Cache::invalidate_path`].
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), cache_page_runtime::Error> {
/// cache_page_runtime::invalidate_path("/products/42").await?;
/// # Ok(()) }
/// ```
pub async fn invalidate_path(path: &str) -> Result<(), Error> {
    default_cache().invalidate_path(path).await.map(|_| ())
}

/// Invalidates one URL with its query string in the default cache, whatever the
/// request headers, in O(1). See [`Cache::invalidate_url`].
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), cache_page_runtime::Error> {
/// cache_page_runtime::invalidate_url("/products?page=2").await?;
/// # Ok(()) }
/// ```
pub async fn invalidate_url(url: &str) -> Result<(), Error> {
    default_cache().invalidate_url(url).await.map(|_| ())
}

/// Invalidates every page stored under a handler `prefix` (its `prefix = "…"`
/// argument) in the default cache, in O(1). See [`Cache::invalidate_prefix`].
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), cache_page_runtime::Error> {
/// // For every handler with #[cache_page(…, prefix = "v2")]:
/// cache_page_runtime::invalidate_prefix("v2").await?;
/// # Ok(()) }
/// ```
pub async fn invalidate_prefix(prefix: &str) -> Result<(), Error> {
    default_cache().invalidate_prefix(prefix).await.map(|_| ())
}

/// `url` with the bytes no URL holds as they are (non-ASCII text, spaces, controls,
/// quotes, angle brackets, braces and the like) percent-encoded; everything else, `%`
/// included, as it is.
fn encode_text(url: &str) -> std::borrow::Cow<'_, str> {
    let raw = |b: u8| {
        b.is_ascii_graphic()
            && !matches!(
                b,
                b'"' | b'<' | b'>' | b'\\' | b'^' | b'`' | b'{' | b'|' | b'}'
            )
    };
    if url.bytes().all(raw) {
        return std::borrow::Cow::Borrowed(url);
    }
    let mut out = String::with_capacity(url.len() + 8);
    for b in url.bytes() {
        if raw(b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    std::borrow::Cow::Owned(out)
}

/// Deletes every page stored with `tag` in the default cache. See
/// [`Cache::invalidate_tag`].
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), cache_page_runtime::Error> {
/// let deleted = cache_page_runtime::invalidate_tag("product:42").await?;
/// assert_eq!(deleted, 0); // nothing was tagged yet
/// # Ok(()) }
/// ```
pub async fn invalidate_tag(tag: &str) -> Result<u64, Error> {
    default_cache().invalidate_tag(tag).await
}
