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

use crate::{
    Cache, Entry, Error, PageConfig,
    entry::{VaryIndex, unix_ms},
    key::{canonical_url, digest, variant_hash},
    policy::{self, Uncacheable},
    request::{CacheRequest, Capture, Forward},
    store::{Lookup, PageKey, Version},
};

/// Serves a request for a cached handler: `handler` runs only on a miss.
pub async fn serve<F, R>(config: &PageConfig, request: CacheRequest, handler: F) -> Response
where
    F: Future<Output = R>,
    R: IntoResponse,
{
    let (parts, refresh) = match request.0 {
        Capture::Lookup { parts, refresh } => (parts, refresh),
        Capture::Bypass { cache, why } => {
            let cache = config.store.and_then(crate::named_cache).or(cache);
            return forward(cache.as_ref(), handler.await.into_response(), why);
        }
    };
    let cache = match resolve(config, &parts) {
        Ok(cache) => cache,
        Err(err) => {
            tracing::error!(error = %err, "cache not found; serving uncached");
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
    let groups: Vec<String> = config.groups.iter().map(|g| g.resolve(&parts)).collect();
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

    let lookup = match cache.with_timeout(cache.store().lookup(page)).await {
        Ok(lookup) => lookup,
        Err(err) => {
            tracing::warn!(error = %err, "cache lookup failed; serving uncached");
            return handler.await.into_response();
        }
    };
    let found = find(&cache, &lookup, &parts).await;
    let target = match found {
        Found::Page(entry) if !refresh => return hit(&cache, &entry, &parts),
        Found::Variant {
            variant: Some(entry),
            ..
        } if !refresh => return hit(&cache, &entry, &parts),
        Found::Page(_) | Found::Nothing => Target {
            hash: lookup.hash,
            index: None,
        },
        Found::Variant {
            index,
            variant_hash,
            ..
        } => Target {
            hash: lookup.hash,
            index: Some((index, variant_hash)),
        },
    };
    let why = if refresh {
        Forward::Request
    } else if target.index.is_some() {
        Forward::VaryMiss
    } else {
        Forward::UriMiss
    };

    let response = handler.await.into_response();
    let miss = Miss {
        cache: &cache,
        config,
        parts: &parts,
        scopes: lookup.scopes,
        why,
    };
    miss.store(target, response).await
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

/// An entry is served only while the scopes it was stored under are unchanged and it
/// is fresh.
fn usable(entry: &Entry, scopes: &[u64], now: SystemTime) -> bool {
    entry.scopes == scopes && !entry.is_stale_at(now)
}

async fn find(cache: &Cache, lookup: &Lookup, parts: &Parts) -> Found {
    let now = SystemTime::now();
    let Some(entry) = lookup
        .entry
        .as_ref()
        .filter(|e| usable(e, &lookup.scopes, now))
    else {
        return Found::Nothing;
    };
    let Some(index) = &entry.vary else {
        return Found::Page(entry.clone());
    };
    let variant_hash = variant_hash(&lookup.hash, index.nonce, &vary_values(parts, &index.names));
    let variant = match cache.with_timeout(cache.store().get(&variant_hash)).await {
        Ok(v) => v.filter(|v| v.vary.is_none() && usable(v, &lookup.scopes, now)),
        Err(err) => {
            tracing::warn!(error = %err, "cache lookup failed; serving uncached");
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

/// Builds the response for a stored entry, with `Age`, or a `304` when the request's
/// validators match it.
fn hit(cache: &Cache, entry: &Entry, parts: &Parts) -> Response {
    let age = entry.age_at(SystemTime::now()).as_secs();
    let not_modified =
        is_not_modified(&parts.headers, || entry.headers.iter().map(|(n, v)| (n, v)));
    let mut response = if not_modified {
        let mut r = Response::new(Body::empty());
        *r.status_mut() = StatusCode::NOT_MODIFIED;
        r
    } else if parts.method == Method::HEAD {
        let mut r = Response::new(Body::empty());
        r.headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from(entry.body.len()));
        r
    } else {
        Response::new(Body::from(entry.body.clone()))
    };
    if !not_modified {
        *response.status_mut() = entry.status;
    }
    let headers = response.headers_mut();
    headers.reserve(entry.headers.len() + 2);
    for (name, value) in &entry.headers {
        if !not_modified || policy::kept_in_304(name) {
            headers.append(name.clone(), value.clone());
        }
    }
    headers.insert(header::AGE, HeaderValue::from(age));
    if let Some(name) = cache.cache_status() {
        let ttl = entry.ttl.as_secs().saturating_sub(age);
        set_status(headers, format_args!("{name}; hit; ttl={ttl}"));
    }
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

/// A miss: everything needed to store the handler's response.
struct Miss<'a> {
    cache: &'a Cache,
    config: &'a PageConfig,
    parts: &'a Parts,
    scopes: Vec<u64>,
    why: Forward,
}

impl Miss<'_> {
    fn refuse(&self, mut head: http::response::Parts, body: Body, why: Uncacheable) -> Response {
        tracing::debug!(reason = why.as_str(), "response not stored");
        if let Some(name) = self.cache.cache_status() {
            set_status(
                &mut head.headers,
                format_args!("{name}; fwd={}; detail={}", self.why.as_str(), why.as_str()),
            );
        }
        Response::from_parts(head, body)
    }

    /// Stores `response` if the rules allow it, and returns it whole.
    async fn store(self, target: Target, response: Response) -> Response {
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
                return Response::from_parts(head, Body::from_stream(failed));
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
        let entry = Entry {
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
            scopes: self.scopes.clone(),
            vary: None,
        };
        let tags: Vec<String> = self
            .config
            .tags
            .iter()
            .map(|t| t.resolve(self.parts))
            .collect();
        let stored = self
            .insert(target, entry, policy::vary_names(&head.headers), &tags)
            .await;
        if let Err(err) = &stored {
            tracing::warn!(error = %err, "cache store failed; page served uncached");
        }
        if let Some(name) = self.cache.cache_status() {
            match stored {
                Ok(()) => set_status(
                    &mut head.headers,
                    format_args!("{name}; fwd={}; stored; ttl={timeout}", self.why.as_str()),
                ),
                Err(_) => set_status(
                    &mut head.headers,
                    format_args!("{name}; fwd={}", self.why.as_str()),
                ),
            }
        }
        if is_not_modified(&self.parts.headers, || head.headers.iter()) {
            let mut not_modified = Response::new(Body::empty());
            *not_modified.status_mut() = StatusCode::NOT_MODIFIED;
            *not_modified.headers_mut() = head
                .headers
                .into_iter()
                .filter_map(|(n, v)| Some((n?, v)))
                .filter(|(n, _)| policy::kept_in_304(n) || n == "cache-status")
                .collect();
            return not_modified;
        }
        Response::from_parts(head, Body::from(bytes))
    }

    /// Writes the entry where it belongs: at the page's hash when the response does
    /// not vary; otherwise at its variant's hash, under a vary index at the page's
    /// hash (a new one when the header list changed).
    async fn insert(
        &self,
        target: Target,
        entry: Entry,
        names: Vec<HeaderName>,
        tags: &[String],
    ) -> Result<(), Error> {
        let store = self.cache.store();
        if names.is_empty() {
            return self
                .cache
                .with_timeout(store.insert(&target.hash, Arc::new(entry), tags))
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
                    &vary_values(self.parts, &index.names),
                );
                let index = Entry::vary_index(
                    index,
                    entry.created_ms,
                    entry.ttl,
                    entry.grace,
                    entry.scopes.clone(),
                );
                self.cache
                    .with_timeout(store.insert(&target.hash, Arc::new(index), tags))
                    .await?;
                variant
            }
        };
        self.cache
            .with_timeout(store.insert(&variant, Arc::new(entry), tags))
            .await
    }
}
