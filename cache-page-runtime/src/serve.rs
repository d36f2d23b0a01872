//! The request path: look up, serve a hit, or run the handler and store its response.
//!
//! Every store failure on this path is logged and turned into "serve uncached": the
//! cache can make a page slower or faster, never fail it.

use std::{sync::Arc, time::SystemTime};

use axum::{
    body::Body,
    response::{IntoResponse, Response},
};
use bytes::Bytes;
use http::{HeaderValue, Method, header, request::Parts};
use http_body::Body as _;
use http_body_util::BodyExt;

use crate::{
    Cache, Entry, Error, PageConfig,
    entry::unix_ms,
    policy,
    request::{CacheRequest, Capture},
    store::{Lookup, PageKey},
};

/// Serves a request for a cached handler: `handler` runs only on a miss.
pub async fn serve<F, R>(config: &PageConfig, request: CacheRequest, handler: F) -> Response
where
    F: Future<Output = R>,
    R: IntoResponse,
{
    let Capture::Lookup { parts, refresh } = request.0 else {
        return handler.await.into_response();
    };
    let cache = match resolve(config, &parts) {
        Ok(cache) => cache,
        Err(err) => {
            tracing::error!(error = %err, "cache not found; serving uncached");
            return handler.await.into_response();
        }
    };
    let prefix = config.prefix.resolve(&parts);
    let groups: Vec<String> = config.groups.iter().map(|g| g.resolve(&parts)).collect();
    let key = (config.key)(&parts);
    let page = PageKey {
        prefix: &prefix,
        groups: &groups,
        key: &key,
    };

    let hash = match cache.with_timeout(cache.store().lookup(page)).await {
        Ok(Lookup {
            entry: Some(entry), ..
        }) if !refresh => {
            tracing::trace!(key = %key, "cache hit");
            return hit(&cache, &entry, &parts);
        }
        Ok(Lookup { hash, .. }) => Some(hash),
        Err(err) => {
            tracing::warn!(error = %err, "cache lookup failed; serving uncached");
            None
        }
    };

    let response = handler.await.into_response();
    match hash {
        Some(hash) => store(&cache, config, &hash, response).await,
        None => response,
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

/// Builds the response for a stored entry, with `Age`.
fn hit(cache: &Cache, entry: &Entry, parts: &Parts) -> Response {
    let mut response = Response::new(if parts.method == Method::HEAD {
        Body::empty()
    } else {
        Body::from(entry.body.clone())
    });
    *response.status_mut() = entry.status;
    let headers = response.headers_mut();
    headers.reserve(entry.headers.len() + 2);
    for (name, value) in &entry.headers {
        headers.append(name.clone(), value.clone());
    }
    let age = entry.age_at(SystemTime::now()).as_secs();
    headers.insert(header::AGE, HeaderValue::from(age));
    if let Some(name) = cache.cache_status() {
        let ttl = entry.ttl.as_secs().saturating_sub(age);
        if let Ok(value) = HeaderValue::from_str(&format!("{name}; hit; ttl={ttl}")) {
            headers.insert("cache-status", value);
        }
    }
    response
}

/// Stores `response` under `hash` if the rules allow it, and returns it (whole).
async fn store(cache: &Cache, config: &PageConfig, hash: &str, response: Response) -> Response {
    let (mut head, body) = response.into_parts();
    let refuse = |mut head: http::response::Parts, body: Body, why: &dyn std::fmt::Debug| {
        tracing::debug!(reason = ?why, "response not stored");
        if let Some(name) = cache.cache_status() {
            if let Ok(value) = HeaderValue::from_str(&format!("{name}; fwd=uri-miss")) {
                head.headers.insert("cache-status", value);
            }
        }
        Response::from_parts(head, body)
    };
    if let Err(why) = policy::check(head.status, &head.headers) {
        return refuse(head, body, &why);
    }
    let timeout = config.timeout.for_response(&head);
    if timeout == 0 {
        return refuse(head, body, &policy::Uncacheable::ZeroTimeout);
    }
    // Only bodies of known length within the limit are buffered; a stream passes
    // through untouched.
    let len = match body.size_hint().exact() {
        Some(len) if len <= cache.max_body_bytes() as u64 => len,
        _ => return refuse(head, body, &"body of unknown length or over the limit"),
    };
    let bytes: Bytes = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(err) => {
            tracing::warn!(error = %err, "response body failed; not stored");
            let failed = futures_util::stream::once(std::future::ready(Err::<Bytes, _>(err)));
            return Response::from_parts(head, Body::from_stream(failed));
        }
    };
    // A body shorter than it announced (a HEAD answered without its body, say) is
    // never stored: a later GET would get a truncated page.
    let declared = head
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if bytes.len() as u64 != len || declared.is_some_and(|d| d != len) {
        return refuse(head, Body::from(bytes), &"body shorter than announced");
    }

    let now = SystemTime::now();
    policy::patch_headers(&mut head.headers, timeout, now);
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
        ttl: std::time::Duration::from_secs(timeout),
    });
    let stored = cache
        .with_timeout(
            cache
                .store()
                .insert(hash, entry, std::time::Duration::from_secs(timeout)),
        )
        .await;
    if let Err(err) = &stored {
        tracing::warn!(error = %err, "cache store failed; page served uncached");
    }
    if let Some(name) = cache.cache_status() {
        let status = match stored {
            Ok(()) => format!("{name}; fwd=uri-miss; stored; ttl={timeout}"),
            Err(_) => format!("{name}; fwd=uri-miss"),
        };
        if let Ok(value) = HeaderValue::from_str(&status) {
            head.headers.insert("cache-status", value);
        }
    }
    Response::from_parts(head, Body::from(bytes))
}
