//! The request path: look up, serve a hit, or run the handler and store its response.
//!
//! Every store failure on this path is logged and turned into "serve uncached": the
//! cache can make a page slower or faster, never fail it.

use std::{
    sync::Arc,
    time::{Duration, SystemTime},
};

use axum::{
    body::Body,
    response::{IntoResponse, Response},
};
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header, request::Parts};
use http_body::Body as _;
use http_body_util::BodyExt;

use tracing::Instrument as _;

use crate::{
    Cache, Entry, Error, PageConfig,
    entry::{VaryIndex, unix_ms},
    flight::{Join, Landed, Waited},
    key::{canonical_url, digest, variant_hash},
    policy::{self, Uncacheable},
    request::{CacheRequest, Capture, Forward},
    store::{Lookup, PageKey, Version},
    telemetry::{self, Outcome},
};

/// Serves a request for a cached handler: `handler` runs only on a miss.
pub async fn serve<F, R>(config: &'static PageConfig, request: CacheRequest, handler: F) -> Response
where
    F: Future<Output = R> + Send + 'static,
    R: IntoResponse,
{
    match request.0 {
        Capture::Lookup { parts, refresh } => {
            let span = tracing::debug_span!("cache_page", uri = %parts.uri);
            lookup_and_serve(config, parts, refresh, handler)
                .instrument(span)
                .await
        }
        Capture::Bypass { cache, why } => {
            let cache = config.store.and_then(crate::named_cache).or(cache);
            forward(cache.as_ref(), handler.await.into_response(), why)
        }
    }
}

async fn lookup_and_serve<F, R>(
    config: &'static PageConfig,
    parts: Box<Parts>,
    refresh: bool,
    handler: F,
) -> Response
where
    F: Future<Output = R> + Send + 'static,
    R: IntoResponse,
{
    let cache = match resolve(config, &parts) {
        Ok(cache) => cache,
        Err(err) => {
            telemetry::error("lookup", &err);
            telemetry::request(Outcome::Bypass);
            return handler.await.into_response();
        }
    };
    if config
        .only_if
        .as_ref()
        .is_some_and(|only_if| !only_if(&parts))
    {
        return forward(Some(&cache), handler.await.into_response(), Forward::Bypass);
    }
    let caller = match parts.headers.get(header::AUTHORIZATION) {
        None => None,
        Some(credentials) if config.authorized => Some(digest(credentials.as_bytes())),
        Some(_) => {
            return forward(Some(&cache), handler.await.into_response(), Forward::Bypass);
        }
    };

    let prefix = config.prefix.resolve(&parts);
    let groups = config.resolve_groups(&parts);
    let key = (config.key)(&parts);
    let url = canonical_url(parts.uri.path(), parts.uri.query());
    let mut scopes = vec![Version::Path(parts.uri.path()), Version::Url(&url)];
    if !prefix.is_empty() {
        scopes.push(Version::Prefix(&prefix));
    }
    let page = PageKey {
        prefix: &prefix,
        groups: &groups,
        key: &key,
        caller: caller.as_deref(),
        scopes: &scopes,
    };

    let seq = cache.flights().seq();
    let started = std::time::Instant::now();
    let lookup = cache.guarded(cache.store().lookup(page)).await;
    telemetry::lookup_took(started.elapsed());
    let lookup = match lookup {
        Ok(lookup) => lookup,
        Err(err) => {
            telemetry::error("lookup", &err);
            let mut response = handler.await.into_response();
            if let Some(name) = cache.cache_status() {
                let detail = match err {
                    Error::Unavailable => "store-unavailable",
                    _ => "store-error",
                };
                set_status(
                    response.headers_mut(),
                    format_args!("{name}; fwd=uri-miss; detail={detail}"),
                );
            }
            return response;
        }
    };
    let now = SystemTime::now();
    let (found, target) = match find(&cache, &lookup, &parts, &url, now).await {
        Found::Nothing => (
            None,
            Target {
                hash: lookup.hash,
                index: None,
            },
        ),
        Found::Page(entry) => (
            Some(entry),
            Target {
                hash: lookup.hash,
                index: None,
            },
        ),
        Found::Variant {
            index,
            variant_hash,
            variant,
        } => (
            variant,
            Target {
                hash: lookup.hash,
                index: Some((index, variant_hash)),
            },
        ),
    };
    if let Some(entry) = found
        && !refresh
    {
        if entry.is_stale_at(now) {
            // In its grace period: serve it, and refresh it in the background unless
            // another request already does. A refresh that fails stores nothing, so
            // the stale page goes on being served (stale-if-error).
            let refreshed = cache
                .flights()
                .recent(&target.hash)
                .is_some_and(|landed| landed.seq > seq);
            if !refreshed && let Join::Leader(leader) = cache.flights().join(&target.hash) {
                let miss = Miss {
                    cache: cache.clone(),
                    config,
                    parts: parts.clone(),
                    url: url.clone(),
                    seq,
                    scopes: lookup.scopes,
                    why: Forward::Stale,
                };
                tokio::spawn(async move {
                    let (_, landed) = miss.run(target, handler).await;
                    leader.land(landed);
                });
            }
        }
        return hit(&cache, &entry, &parts, Served::Hit);
    }
    let why = if refresh {
        Forward::Request
    } else if target.index.is_some() {
        Forward::VaryMiss
    } else {
        Forward::UriMiss
    };
    telemetry::request(Outcome::Miss);
    let miss = Miss {
        cache: cache.clone(),
        config,
        parts,
        url,
        seq,
        scopes: lookup.scopes,
        why,
    };
    if !cache.single_flight() || refresh {
        return miss.run(target, handler).await.0;
    }
    // A follower whose leader went away (a panic, a cancelled request) joins again, so
    // that one of the followers leads the next attempt; after a few, it runs alone.
    let mut join = cache.flights().join(&target.hash);
    let mut rejoins = 0;
    loop {
        match join {
            Join::Leader(leader) => {
                // A flight for this page may have landed after this request's lookup.
                if let Some(landed) = cache.flights().recent(&target.hash)
                    && miss.may_serve(&landed)
                {
                    let response = hit(&cache, &landed.entry, &miss.parts, Served::Collapsed);
                    leader.land(Some(landed));
                    return response;
                }
                let (response, landed) = miss.lead(target, handler).await;
                leader.land(landed);
                return response;
            }
            Join::Follower(follower) => match follower.wait(cache.coalesce_wait()).await {
                Waited::Landed(Some(landed)) if miss.may_serve(&landed) => {
                    return hit(&cache, &landed.entry, &miss.parts, Served::Collapsed);
                }
                Waited::LeaderGone if rejoins < 3 => {
                    rejoins += 1;
                    join = cache.flights().join(&target.hash);
                }
                _ => return miss.run(target, handler).await.0,
            },
        }
    }
}

fn resolve(config: &PageConfig, parts: &Parts) -> Result<Cache, Error> {
    if let Some(name) = config.store {
        return crate::named_cache(name).ok_or_else(|| Error::UnknownCache(name.to_owned()));
    }
    Ok(parts
        .extensions
        .get::<Cache>()
        .cloned()
        .unwrap_or_else(|| crate::default_cache().clone()))
}

/// What a lookup found, once validated.
enum Found {
    Nothing,
    Page(Arc<Entry>),
    /// A vary index; the variant for this request's headers, if it is stored.
    Variant {
        index: VaryIndex,
        variant_hash: String,
        variant: Option<Arc<Entry>>,
    },
}

/// Where a miss stores its response: the page's hash, and the vary index in force.
struct Target {
    hash: String,
    index: Option<(VaryIndex, String)>,
}

/// An entry is served only while it is fresh or within its grace period, and while
/// its scopes are unchanged. Path and URL versions are those of the request the entry
/// was stored for (its origin): they are compared only when this request has the same
/// path, or the same URL, so that pages a key function shares between URLs are shared.
/// The prefix version, past them, always applies.
fn usable(entry: &Entry, scopes: &[u64], url: &str, now: SystemTime) -> bool {
    if entry.age_at(now) >= entry.store_ttl() || entry.scopes.len() != scopes.len() {
        return false;
    }
    let path = |u: &str| u.split_once('?').map_or(u, |(p, _)| p).len();
    let same_path = entry.origin[..path(&entry.origin)] == url[..path(url)];
    let same_url = entry.origin == url;
    entry
        .scopes
        .iter()
        .zip(scopes)
        .enumerate()
        .all(|(i, (stored, current))| match i {
            0 => !same_path || stored == current,
            1 => !same_url || stored == current,
            _ => stored == current,
        })
}

async fn find(cache: &Cache, lookup: &Lookup, parts: &Parts, url: &str, now: SystemTime) -> Found {
    let Some(entry) = lookup
        .entry
        .as_ref()
        .filter(|e| usable(e, &lookup.scopes, url, now))
    else {
        return Found::Nothing;
    };
    let Some(index) = &entry.vary else {
        return Found::Page(entry.clone());
    };
    let variant_hash = variant_hash(&lookup.hash, index.nonce, &vary_values(parts, &index.names));
    let variant = match cache.guarded(cache.store().get(&variant_hash)).await {
        Ok(v) => v.filter(|v| v.vary.is_none() && usable(v, &lookup.scopes, url, now)),
        Err(err) => {
            telemetry::error("lookup", &err);
            None
        }
    };
    Found::Variant {
        index: index.clone(),
        variant_hash,
        variant,
    }
}

/// The values of the request headers a page varies on, `None` when absent.
fn vary_values<'a>(parts: &Parts, names: &'a [HeaderName]) -> Vec<(&'a str, Option<String>)> {
    names
        .iter()
        .map(|name| {
            let mut values = parts.headers.get_all(name).iter().peekable();
            let value = values.peek().is_some().then(|| {
                values
                    .map(|v| String::from_utf8_lossy(v.as_bytes()))
                    .collect::<Vec<_>>()
                    .join(", ")
            });
            (name.as_str(), value)
        })
        .collect()
}

impl Landed {
    /// Whether a request with `parts` has the values of the headers the response
    /// varies on that the leader's request had.
    fn matches(&self, parts: &Parts) -> bool {
        let values = vary_values(parts, &self.names);
        values.len() == self.values.len()
            && values
                .iter()
                .zip(&self.values)
                .all(|((_, mine), theirs)| mine == theirs)
    }
}

/// How a stored entry came to be served, for `Cache-Status`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Served {
    /// Found in the store.
    Hit,
    /// Another request of this process ran the handler and stored it meanwhile.
    Collapsed,
}

/// Builds the response for a stored entry, with `Age`, or a `304` when the request's
/// validators match it.
fn hit(cache: &Cache, entry: &Entry, parts: &Parts, served: Served) -> Response {
    let now = SystemTime::now();
    telemetry::request(match served {
        Served::Hit if entry.is_stale_at(now) => Outcome::Stale,
        Served::Hit => Outcome::Hit,
        Served::Collapsed => Outcome::Collapsed,
    });
    let age = entry.age_at(now).as_secs();
    // Preconditions apply only to what would be a 2xx (RFC 9110 §13.2.1).
    let not_modified = entry.status.is_success()
        && is_not_modified(&parts.headers, || entry.headers.iter().map(|(n, v)| (n, v)));
    let mut headers = HeaderMap::with_capacity(entry.headers.len() + 3);
    for (name, value) in &entry.headers {
        if !not_modified || policy::kept_in_304(name) {
            headers.append(name.clone(), value.clone());
        }
    }
    headers.insert(header::AGE, HeaderValue::from(age));
    let (status, body) = if not_modified {
        (StatusCode::NOT_MODIFIED, Body::empty())
    } else if parts.method == Method::HEAD {
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(entry.body.len()));
        (entry.status, Body::empty())
    } else {
        (entry.status, Body::from(entry.body.clone()))
    };
    if let Some(name) = cache.cache_status() {
        // Negative once stale (RFC 9211 §2.4).
        let ttl = entry.ttl.as_secs() as i64 - age as i64;
        let served = match served {
            Served::Hit => "; hit; ttl=",
            Served::Collapsed => "; fwd=uri-miss; collapsed; ttl=",
        };
        let mut value = String::with_capacity(name.len() + served.len() + 20);
        value.push_str(name);
        value.push_str(served);
        value.push_str(itoa::Buffer::new().format(ttl));
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(HeaderName::from_static("cache-status"), value);
        }
    }
    let mut response = Response::new(body);
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    response
}

/// Whether a request's `If-None-Match` (or, without it, `If-Modified-Since`) is
/// satisfied by a response with `headers`.
fn is_not_modified<'a, I>(request: &HeaderMap, headers: impl Fn() -> I) -> bool
where
    I: Iterator<Item = (&'a HeaderName, &'a HeaderValue)>,
{
    let find = |wanted: &HeaderName| headers().find(|(n, _)| *n == wanted).map(|(_, v)| v);
    if request.contains_key(header::IF_NONE_MATCH) {
        let Some(etag) = find(&header::ETAG).and_then(|v| v.to_str().ok()) else {
            return false;
        };
        return request
            .get_all(header::IF_NONE_MATCH)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|tag| policy::weak_match(tag.trim(), etag));
    }
    let since = request
        .get(header::IF_MODIFIED_SINCE)
        .and_then(|v| httpdate::parse_http_date(v.to_str().ok()?).ok());
    let modified =
        find(&header::LAST_MODIFIED).and_then(|v| httpdate::parse_http_date(v.to_str().ok()?).ok());
    matches!((since, modified), (Some(since), Some(modified)) if modified <= since)
}

fn set_status(headers: &mut HeaderMap, value: std::fmt::Arguments<'_>) {
    if let Ok(value) = HeaderValue::from_str(&value.to_string()) {
        headers.insert(HeaderName::from_static("cache-status"), value);
    }
}

/// A response that went around the cache, with its `Cache-Status`.
fn forward(cache: Option<&Cache>, mut response: Response, why: Forward) -> Response {
    telemetry::request(Outcome::Bypass);
    let name = match cache {
        Some(cache) => cache.cache_status(),
        None => crate::default_cache().cache_status(),
    };
    if let Some(name) = name {
        set_status(
            response.headers_mut(),
            format_args!("{name}; fwd={}", why.as_str()),
        );
    }
    response
}

/// A miss: everything needed to run the handler and store its response. It owns its
/// parts so that a background refresh can take it along.
struct Miss {
    cache: Cache,
    config: &'static PageConfig,
    parts: Box<Parts>,
    /// The request's canonical URL: the origin its entry records.
    url: String,
    /// The flights' landing count when this request's lookup began.
    seq: u64,
    scopes: Vec<u64>,
    why: Forward,
}

impl Miss {
    /// Runs the handler and stores its response.
    async fn run<F, R>(self, target: Target, handler: F) -> (Response, Option<Landed>)
    where
        F: Future<Output = R>,
        R: IntoResponse,
    {
        let response = handler.await.into_response();
        self.store(target, response).await
    }

    /// Runs the handler as the leader of this process's flight. With a distributed
    /// lock configured, first takes the lock in the store; when another instance holds
    /// it, waits (boundedly) for that instance's entry instead of running the handler.
    async fn lead<F, R>(self, target: Target, handler: F) -> (Response, Option<Landed>)
    where
        F: Future<Output = R>,
        R: IntoResponse,
    {
        let Some(wait) = self.cache.lock_wait() else {
            return self.run(target, handler).await;
        };
        let store = self.cache.store();
        match self.cache.guarded(store.lock(&target.hash, wait)).await {
            Ok(true) => {
                let cache = self.cache.clone();
                let hash = target.hash.clone();
                // Another instance may have stored the page and released the lock
                // between this request's lookup and its taking the lock.
                let out = match self.stored_entry(&hash).await {
                    Some(entry) => {
                        let response = hit(&self.cache, &entry, &self.parts, Served::Collapsed);
                        (response, Some(self.landed(entry)))
                    }
                    None => self.run(target, handler).await,
                };
                if let Err(err) = cache.guarded(cache.store().unlock(&hash)).await {
                    tracing::debug!(error = %err, "cache lock not released; it will expire");
                }
                out
            }
            Ok(false) => {
                if let Some(entry) = self.await_other_instance(&target.hash, wait).await {
                    let response = hit(&self.cache, &entry, &self.parts, Served::Collapsed);
                    let landed = self.landed(entry);
                    return (response, Some(landed));
                }
                self.run(target, handler).await
            }
            Err(err) => {
                tracing::warn!(error = %err, "cache lock failed; running the handler");
                self.run(target, handler).await
            }
        }
    }

    /// Polls the store for the entry another instance is building, for at most `wait`.
    async fn await_other_instance(&self, hash: &str, wait: Duration) -> Option<Arc<Entry>> {
        let deadline = tokio::time::Instant::now() + wait;
        let mut pause = Duration::from_millis(5);
        while tokio::time::Instant::now() < deadline {
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(50));
            if let Some(entry) = self.stored_entry(hash).await {
                return Some(entry);
            }
        }
        None
    }

    /// The entry now stored for this request's page, if it may be served.
    async fn stored_entry(&self, hash: &str) -> Option<Arc<Entry>> {
        let entry = self
            .cache
            .guarded(self.cache.store().get(hash))
            .await
            .ok()??;
        let lookup = Lookup {
            hash: hash.to_owned(),
            entry: Some(entry),
            scopes: self.scopes.clone(),
        };
        let now = SystemTime::now();
        match find(&self.cache, &lookup, &self.parts, &self.url, now).await {
            Found::Page(entry)
            | Found::Variant {
                variant: Some(entry),
                ..
            } if !entry.is_stale_at(now) => Some(entry),
            _ => None,
        }
    }

    /// Whether this request may be served what another one stored: the same values of
    /// the headers it varies on, and fresh under this request's scope versions (so a
    /// request that started after an invalidation is never served a page from before).
    fn may_serve(&self, landed: &Landed) -> bool {
        let now = SystemTime::now();
        landed.seq > self.seq
            && landed.matches(&self.parts)
            && usable(&landed.entry, &self.scopes, &self.url, now)
            && !landed.entry.is_stale_at(now)
    }

    fn landed(&self, entry: Arc<Entry>) -> Landed {
        let names = policy::vary_names_of(&entry.headers);
        let values = vary_values(&self.parts, &names)
            .into_iter()
            .map(|(_, v)| v)
            .collect();
        Landed {
            seq: 0,
            entry,
            names,
            values,
        }
    }

    fn refuse(
        &self,
        mut head: http::response::Parts,
        body: Body,
        why: Uncacheable,
    ) -> (Response, Option<Landed>) {
        telemetry::not_stored(why.as_str());
        if let Some(name) = self.cache.cache_status() {
            set_status(
                &mut head.headers,
                format_args!("{name}; fwd={}; detail={}", self.why.as_str(), why.as_str()),
            );
        }
        (Response::from_parts(head, body), None)
    }

    /// Stores `response` if the rules allow it, and returns it whole, with what
    /// followers may be served (nothing when it was not stored).
    async fn store(self, target: Target, response: Response) -> (Response, Option<Landed>) {
        let (mut head, body) = response.into_parts();
        let timeout = self.config.timeout.for_response(&head);
        if head.status == StatusCode::NOT_MODIFIED {
            // The handler answered a conditional request itself: pass it through with
            // the caching headers, never store it.
            if timeout > 0 && policy::check(&head.headers).is_ok() {
                policy::patch_headers(&mut head.headers, timeout, SystemTime::now());
            }
            return self.refuse(head, body, Uncacheable::NotModified);
        }
        if !self.config.statuses.contains(&head.status.as_u16()) {
            return self.refuse(head, body, Uncacheable::Status);
        }
        if let Err(why) = policy::check(&head.headers) {
            return self.refuse(head, body, why);
        }
        if timeout == 0 {
            return self.refuse(head, body, Uncacheable::ZeroTimeout);
        }
        // Only bodies of known length within the limit are buffered; a stream passes
        // through untouched.
        let len = match body.size_hint().exact() {
            Some(len) if len <= self.cache.max_body_bytes() as u64 => len,
            Some(_) => return self.refuse(head, body, Uncacheable::TooLarge),
            None => return self.refuse(head, body, Uncacheable::Streaming),
        };
        let bytes: Bytes = match body.collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(err) => {
                tracing::warn!(error = %err, "response body failed; not stored");
                let failed = futures_util::stream::once(std::future::ready(Err::<Bytes, _>(err)));
                return (Response::from_parts(head, Body::from_stream(failed)), None);
            }
        };
        // Never store a body shorter than it announced, or an empty answer to HEAD
        // (the handler may have left the body out): a later GET would be truncated.
        let declared = head
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        if bytes.len() as u64 != len
            || declared.is_some_and(|d| d != len)
            || (self.parts.method == Method::HEAD && bytes.is_empty())
        {
            return self.refuse(head, Body::from(bytes), Uncacheable::Truncated);
        }

        let now = SystemTime::now();
        policy::patch_headers(&mut head.headers, timeout, now);
        if !head.headers.contains_key(header::ETAG) {
            let etag = format!("\"{}\"", digest(&bytes));
            if let Ok(etag) = HeaderValue::from_str(&etag) {
                head.headers.insert(header::ETAG, etag);
            }
        }
        // Checked again now that the cache added its own headers: an entry keeps at
        // most MAX_HEADERS, and must keep these.
        if head.headers.len() > crate::entry::MAX_HEADERS {
            return self.refuse(head, Body::from(bytes), Uncacheable::TooManyHeaders);
        }
        let entry = Arc::new(Entry {
            status: head.status,
            headers: head
                .headers
                .iter()
                .filter(|(name, _)| policy::is_end_to_end(name))
                .map(|(n, v)| (n.clone(), v.clone()))
                .collect(),
            body: bytes.clone(),
            created_ms: unix_ms(now),
            ttl: Duration::from_secs(timeout),
            grace: Duration::from_secs(self.config.grace),
            origin: self.url.clone(),
            scopes: self.scopes.clone(),
            vary: None,
        });
        let tags: Vec<String> = self
            .config
            .tags
            .iter()
            .map(|t| t.resolve(&self.parts).into_owned())
            .collect();
        let stored = self.insert(target, entry.clone(), &tags).await;
        match &stored {
            Ok(()) => telemetry::stored(),
            Err(err) => telemetry::error("store", err),
        }
        if let Some(name) = self.cache.cache_status() {
            let why = self.why.as_str();
            match stored {
                Ok(()) => set_status(
                    &mut head.headers,
                    format_args!("{name}; fwd={why}; stored; ttl={timeout}"),
                ),
                Err(_) => set_status(&mut head.headers, format_args!("{name}; fwd={why}")),
            }
        }
        let landed = stored.is_ok().then(|| self.landed(entry));
        if head.status.is_success() && is_not_modified(&self.parts.headers, || head.headers.iter())
        {
            let mut not_modified = Response::new(Body::empty());
            *not_modified.status_mut() = StatusCode::NOT_MODIFIED;
            *not_modified.headers_mut() = head
                .headers
                .into_iter()
                .filter_map(|(n, v)| Some((n?, v)))
                .filter(|(n, _)| policy::kept_in_304(n) || n == "cache-status" || n == "age")
                .collect();
            return (not_modified, landed);
        }
        (Response::from_parts(head, Body::from(bytes)), landed)
    }

    /// Writes the entry where it belongs: at the page's hash when the response does
    /// not vary; otherwise at its variant's hash, under a vary index at the page's
    /// hash (a new one when the header list changed).
    async fn insert(
        &self,
        target: Target,
        entry: Arc<Entry>,
        tags: &[String],
    ) -> Result<(), Error> {
        let store = self.cache.store();
        let names = policy::vary_names_of(&entry.headers);
        if names.is_empty() {
            return self
                .cache
                .guarded(store.insert(&target.hash, entry, tags))
                .await;
        }
        let variant = match target.index {
            Some((index, variant)) if index.names == names => variant,
            _ => {
                let index = VaryIndex {
                    names,
                    nonce: crate::store::version_seed(),
                };
                let variant = variant_hash(
                    &target.hash,
                    index.nonce,
                    &vary_values(&self.parts, &index.names),
                );
                let index = Entry::vary_index(index, &entry);
                self.cache
                    .guarded(store.insert(&target.hash, Arc::new(index), tags))
                    .await?;
                variant
            }
        };
        self.cache
            .guarded(store.insert(&variant, entry, tags))
            .await
    }
}
