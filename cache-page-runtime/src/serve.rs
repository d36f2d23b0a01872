//! The request path: look up, serve a hit, or run the handler and store its response.
//!
//! Every store failure on this path is logged and turned into "serve uncached": the
//! cache can make a page slower or faster, never fail it. Responses are built in
//! `respond`, misses are run and stored in `miss`.

use std::{sync::Arc, time::SystemTime};

use axum::response::{IntoResponse, Response};
use http::{HeaderName, header, request::Parts};
use tracing::Instrument as _;

use crate::{
    Cache, Entry, Error, PageConfig,
    entry::{Now, VaryIndex},
    flight::{Join, Landed, Waited},
    key::{canonical_url, digest, variant_hash},
    miss::Miss,
    replica::Answer,
    request::{CacheRequest, Capture, Forward},
    respond::{Served, forward, hit, set_status},
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
    let caller = match crate::key::first_header(&parts.headers, &header::AUTHORIZATION) {
        None => None,
        Some(credentials) if config.authorized => Some(digest(credentials.as_bytes())),
        Some(_) => {
            return forward(Some(&cache), handler.await.into_response(), Forward::Bypass);
        }
    };

    let prefix = config.prefix.resolve(&parts);
    let groups = config.resolve_groups(&parts);
    // The default key is the host and the canonical URL: one string holds both.
    let key: String;
    let own_url: String;
    let (url, path_len): (&str, usize) = if config.default_key {
        let (host_len, path_len);
        (key, host_len, path_len) = crate::key::default_key_and_url(&parts);
        (&key[host_len..], path_len)
    } else {
        key = (config.key)(&parts);
        own_url = canonical_url(parts.uri.path(), parts.uri.query());
        let path_len = own_url.bytes().position(|b| b == b'?');
        (&own_url, path_len.unwrap_or(own_url.len()))
    };
    // The canonical path, as the URL holds it.
    let path = &url[..path_len];
    let scopes = [
        Version::Path(path),
        Version::Url(url),
        Version::Prefix(&prefix),
    ];
    let page = PageKey {
        prefix: &prefix,
        groups: &groups,
        key: &key,
        caller: caller.as_deref(),
        scopes: &scopes[..if prefix.is_empty() { 2 } else { 3 }],
    };

    let seq = cache.flights().seq();
    // The wall clock times the lookup, and its second reading is the request's `now`:
    // two clock reads for both, not three.
    let started = SystemTime::now();
    // Taken, when there is a copy to check, by the in-process store's check of it:
    // the second reading, and the request's `now` from it.
    let mut finished = None;
    let lookup = match cache.in_process() {
        // Answered at once, and it cannot fail: no breaker, no timer, no boxed future.
        // A fresh page of this thread's own copies, usable at this URL and varying on
        // nothing, comes alone, without the hash and versions that only a miss, a
        // stale page or a page that varies needs.
        Some(store) => Ok(
            store.lookup_or_copy(page, Now::at(started), |entry, versions| {
                let time = SystemTime::now();
                let now = Now::at(time);
                finished = Some((time, now));
                !refresh
                    && entry.vary.is_none()
                    && !entry.is_stale(now)
                    && usable(entry, versions, url, now)
            }),
        ),
        None => cache
            .guarded(cache.store().lookup(page))
            .await
            .map(Answer::Lookup),
    };
    let (finished, now) = finished.unwrap_or_else(|| {
        let time = SystemTime::now();
        (time, Now::at(time))
    });
    // A clock set back meanwhile times the lookup as zero.
    telemetry::lookup_took(finished.duration_since(started).unwrap_or_default());
    let lookup = match lookup {
        Ok(Answer::Copy(entry)) => {
            return hit(&cache, &entry, &parts, Served::Hit, now);
        }
        Ok(Answer::Lookup(lookup)) => lookup,
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
    let (found, target) = match find(&cache, &lookup, &parts, url, now).await {
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
    // Nothing at the current versions: a page stored before a soft invalidation of one
    // of its groups is served stale within the handler's grace, and rebuilt below.
    let (found, superseded) = match found {
        None if !refresh && config.grace > 0 && !page.groups.is_empty() => {
            // Boxed, as the miss path below: rare, and its future is large.
            let old = superseded(&cache, page, &lookup.scopes, &parts, url, now, config.grace);
            match Box::pin(old).await {
                Some(entry) => (Some(entry), true),
                None => (None, false),
            }
        }
        found => (found, false),
    };
    if let Some(entry) = found
        && !refresh
    {
        if superseded || entry.is_stale(now) {
            // In its grace period: serve it, and refresh it in the background unless
            // another request already does. A refresh that fails stores nothing, so
            // the stale page goes on being served (stale-if-error).
            let refreshed = cache
                .flights()
                .recent(&target.hash)
                .is_some_and(|landed| landed.seq > seq);
            if !refreshed && let Join::Leader(leader) = cache.flights().join(&target.hash) {
                let miss = Miss {
                    cache: Cache::clone(&cache),
                    config,
                    parts: parts.clone(),
                    url: url.to_owned(),
                    seq,
                    scopes: lookup.scopes,
                    why: Forward::Stale,
                };
                tokio::spawn(async move {
                    leader.land(miss.refresh(target, handler).await);
                });
            }
        }
        let served = if superseded {
            Served::Superseded
        } else {
            Served::Hit
        };
        return hit(&cache, &entry, &parts, served, now);
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
        cache: Cache::clone(&cache),
        config,
        url: url.to_owned(),
        parts,
        seq,
        scopes: lookup.scopes,
        why,
    };
    // Boxed: the miss path's futures are large, and a hit should not carry (and move)
    // their room in its own state.
    Box::pin(run_miss(miss, target, refresh, handler)).await
}

/// Runs a miss: alone, or as the leader or a follower of the flight for its page.
async fn run_miss<F, R>(miss: Miss, target: Target, refresh: bool, handler: F) -> Response
where
    F: Future<Output = R> + Send + 'static,
    R: IntoResponse,
{
    let cache = miss.cache.clone();
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
                    let response = hit(
                        &cache,
                        &landed.entry,
                        &miss.parts,
                        Served::Collapsed,
                        Now::read(),
                    );
                    leader.relay(landed);
                    return response;
                }
                let (response, landed) = miss.lead(target, handler).await;
                leader.land(landed);
                return response;
            }
            Join::Follower(follower) => match follower.wait(cache.coalesce_wait()).await {
                Waited::Landed(Some(landed)) if miss.may_serve(&landed) => {
                    return hit(
                        &cache,
                        &landed.entry,
                        &miss.parts,
                        Served::Collapsed,
                        Now::read(),
                    );
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

/// The cache a request uses: borrowed when it is the default one, so that a hit on
/// the default cache does not count references on a counter every core shares.
enum Resolved {
    Default(&'static Cache),
    Own(Cache),
}

impl std::ops::Deref for Resolved {
    type Target = Cache;

    fn deref(&self) -> &Cache {
        match self {
            Resolved::Default(cache) => cache,
            Resolved::Own(cache) => cache,
        }
    }
}

fn resolve(config: &PageConfig, parts: &Parts) -> Result<Resolved, Error> {
    if let Some(name) = config.store {
        return crate::named_cache(name)
            .map(Resolved::Own)
            .ok_or_else(|| Error::UnknownCache(name.to_owned()));
    }
    Ok(match parts.extensions.get::<Cache>() {
        Some(cache) => Resolved::Own(cache.clone()),
        None => Resolved::Default(crate::default_cache()),
    })
}

/// The page as stored before a soft invalidation of one of its groups, if the store
/// still has it, that invalidation is less than `grace` seconds old, and the page may
/// be served to this request (the same rules as a hit).
async fn superseded(
    cache: &Cache,
    page: PageKey<'_>,
    scopes: &[u64],
    parts: &Parts,
    url: &str,
    now: Now,
    grace: u64,
) -> Option<Arc<Entry>> {
    let old = match cache.guarded(cache.store().soft_lookup(page)).await {
        Ok(old) => old?,
        Err(err) => {
            telemetry::error("lookup", &err);
            return None;
        }
    };
    let since = now.0.saturating_sub(old.invalidated_ms);
    if since >= grace.saturating_mul(1000) {
        return None;
    }
    let lookup = Lookup {
        hash: old.hash,
        entry: Some(old.entry),
        scopes: scopes.to_vec(),
    };
    find(cache, &lookup, parts, url, now).await.entry()
}

/// What a lookup found, once validated.
pub(crate) enum Found {
    Nothing,
    Page(Arc<Entry>),
    /// A vary index; the variant for this request's headers, if it is stored.
    Variant {
        index: VaryIndex,
        variant_hash: String,
        variant: Option<Arc<Entry>>,
    },
}

impl Found {
    /// The entry this request may be served, if one was found.
    pub(crate) fn entry(self) -> Option<Arc<Entry>> {
        match self {
            Found::Page(entry)
            | Found::Variant {
                variant: Some(entry),
                ..
            } => Some(entry),
            _ => None,
        }
    }
}

/// Where a miss stores its response: the page's hash, and the vary index in force.
pub(crate) struct Target {
    pub(crate) hash: String,
    pub(crate) index: Option<(VaryIndex, String)>,
}

/// An entry is served only while it is fresh or within its grace period, and while
/// its scopes are unchanged. Path and URL versions are those of the request the entry
/// was stored for (its origin): they are compared only when this request has the same
/// path, or the same URL, so that pages a key function shares between URLs are shared.
/// The prefix version, past them, always applies.
pub(crate) fn usable(entry: &Entry, scopes: &[u64], url: &str, now: Now) -> bool {
    if entry.is_expired(now) || entry.scopes.len() != scopes.len() {
        return false;
    }
    let path = |u: &str| u.bytes().position(|b| b == b'?').unwrap_or(u.len());
    let same_url = entry.origin == url;
    let same_path = same_url || entry.origin[..path(&entry.origin)] == url[..path(url)];
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

pub(crate) async fn find(
    cache: &Cache,
    lookup: &Lookup,
    parts: &Parts,
    url: &str,
    now: Now,
) -> Found {
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
    // Boxed: only a page that varies waits for a second read, and a hit on any other
    // page should not carry (and move) that wait's room in its state.
    Box::pin(find_variant(cache, lookup, index, parts, url, now)).await
}

/// The variant of a page that varies on request headers, for this request's headers.
async fn find_variant(
    cache: &Cache,
    lookup: &Lookup,
    index: &VaryIndex,
    parts: &Parts,
    url: &str,
    now: Now,
) -> Found {
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
pub(crate) fn vary_values<'a>(
    parts: &Parts,
    names: &'a [HeaderName],
) -> Vec<(&'a str, Option<String>)> {
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
    pub(crate) fn matches(&self, parts: &Parts) -> bool {
        let values = vary_values(parts, &self.names);
        values.len() == self.values.len()
            && values
                .iter()
                .zip(&self.values)
                .all(|((_, mine), theirs)| mine == theirs)
    }
}
