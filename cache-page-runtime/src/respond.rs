//! Responses built by the cache: hits, `304 Not Modified`, and `Cache-Status` on
//! responses that went around it.

use std::{cell::RefCell, sync::LazyLock};

use axum::{body::Body, response::Response};
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header, request::Parts};

use crate::{
    Cache, Entry,
    entry::Now,
    policy,
    request::Forward,
    telemetry::{self, Outcome},
};

/// `Cache-Status` (RFC 9211).
pub(crate) const CACHE_STATUS: HeaderName = HeaderName::from_static("cache-status");

/// A header value of decimal digits.
fn number(n: u64) -> HeaderValue {
    HeaderValue::from_bytes(itoa::Buffer::new().format(n).as_bytes())
        .expect("decimal digits are a valid header value")
}

/// Numbers below this are served from [`small_number`]'s table.
const TABLED: u64 = 10_000;

/// A hit's `Age` and `Content-Length`. Every hit has both, and most ages (below 10,000
/// seconds) and most pages' lengths (below 10,000 bytes) are slices of one string of
/// digits, written once (39 KB): serving them allocates nothing.
fn small_number(n: u64) -> HeaderValue {
    static DIGITS: LazyLock<&'static [u8]> = LazyLock::new(|| {
        let mut all = String::new();
        for n in 0..TABLED {
            all.push_str(itoa::Buffer::new().format(n));
        }
        all.leak().as_bytes()
    });
    if n >= TABLED {
        return number(n);
    }
    // Where `n` starts: after every shorter number, and the ones of its length below it.
    let (start, len) = match n {
        0..10 => (n, 1),
        10..100 => (10 + (n - 10) * 2, 2),
        100..1000 => (190 + (n - 100) * 3, 3),
        _ => (2890 + (n - 1000) * 4, 4),
    };
    let start = start as usize;
    HeaderValue::from_maybe_shared(Bytes::from_static(&DIGITS[start..start + len]))
        .unwrap_or_else(|_| number(n))
}

/// How a stored entry came to be served, for `Cache-Status`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Served {
    /// Found in the store.
    Hit,
    /// Another request of this process ran the handler and stored it meanwhile.
    Collapsed,
    /// Stored before a soft invalidation of one of its groups, served stale while it
    /// is rebuilt.
    Superseded,
}

/// Builds the response for a stored entry, with `Age`, or a `304` when the request's
/// validators match it.
///
/// `now` is the request's clock reading, taken once for the lookup and the response.
pub(crate) fn hit(
    cache: &Cache,
    entry: &Entry,
    parts: &Parts,
    served: Served,
    now: Now,
) -> Response {
    let age = entry.age(now);
    telemetry::request(match served {
        Served::Hit if age >= entry.ttl => Outcome::Stale,
        Served::Superseded => Outcome::Stale,
        Served::Hit => Outcome::Hit,
        Served::Collapsed => Outcome::Collapsed,
    });
    let age = age.as_secs();
    // Preconditions apply only to what would be a 2xx (RFC 9110 §13.2.1).
    let not_modified = entry.status.is_success()
        && is_not_modified(&parts.headers, || entry.headers.iter().map(|(n, v)| (n, v)));
    let head = parts.method == Method::HEAD;
    let mut response = if not_modified {
        let mut response = Response::new(Body::empty());
        *response.status_mut() = StatusCode::NOT_MODIFIED;
        response
    } else {
        let mut response = Response::new(if head {
            Body::empty()
        } else {
            Body::from(entry.body.clone())
        });
        *response.status_mut() = entry.status;
        response
    };
    let headers = response.headers_mut();
    headers.reserve(entry.headers.len() + 3);
    for (name, value) in &entry.headers {
        if !not_modified || policy::kept_in_304(name) {
            headers.append(name.clone(), value.clone());
        }
    }
    headers.insert(header::AGE, small_number(age));
    if !not_modified {
        // The body's length, as axum's router would add it, but from the table: a HEAD
        // needs it (its body is empty), and on a GET it spares the router's look-up,
        // formatting and allocation.
        headers.insert(
            header::CONTENT_LENGTH,
            small_number(entry.body.len() as u64),
        );
    }
    if let Some(name) = cache.cache_status() {
        // Negative once stale (RFC 9211 §2.4); a superseded page is stale already.
        let ttl = match served {
            Served::Superseded => 0,
            _ => entry.ttl.as_secs() as i64 - age as i64,
        };
        if let Some(value) = status_value(name, served, ttl) {
            headers.insert(CACHE_STATUS, value);
        }
    }
    response
}

/// The `Cache-Status` value of a hit: the cache's name, how the entry was served, and
/// its time to live left in seconds.
///
/// The hits on a page within one second carry the same value, so each thread keeps the
/// last value it built for each of a few such times to live: a hit that finds its
/// value there takes a clone (a reference count) instead of formatting, checking and
/// allocating one.
fn status_value(name: &'static str, served: Served, ttl: i64) -> Option<HeaderValue> {
    const SLOTS: usize = 8;
    type Built = (&'static str, Served, i64, HeaderValue);
    thread_local! {
        static BUILT: RefCell<[Option<Built>; SLOTS]> =
            RefCell::new(std::array::from_fn(|_| None));
    }
    let slot = ttl.rem_euclid(SLOTS as i64) as usize;
    let same = |(n, s, t, _): &Built| std::ptr::eq(*n, name) && *s == served && *t == ttl;
    let kept = BUILT
        .try_with(|built| {
            let built = built.try_borrow().ok()?;
            built[slot]
                .as_ref()
                .filter(|b| same(b))
                .map(|(.., v)| v.clone())
        })
        .ok()
        .flatten();
    if kept.is_some() {
        return kept;
    }
    let detail = match served {
        Served::Hit => "; hit; ttl=",
        Served::Superseded => "; hit; detail=invalidated; ttl=",
        Served::Collapsed => "; fwd=uri-miss; collapsed; ttl=",
    };
    let mut digits = itoa::Buffer::new();
    let digits = digits.format(ttl);
    // Exactly as long as its capacity, the buffer becomes the value's own bytes: one
    // allocation, no copy.
    let mut value = Vec::with_capacity(name.len() + detail.len() + digits.len());
    value.extend_from_slice(name.as_bytes());
    value.extend_from_slice(detail.as_bytes());
    value.extend_from_slice(digits.as_bytes());
    let value = HeaderValue::from_maybe_shared(Bytes::from(value)).ok()?;
    // A thread being torn down keeps nothing.
    let _ = BUILT.try_with(|built| {
        if let Ok(mut built) = built.try_borrow_mut() {
            built[slot] = Some((name, served, ttl, value.clone()));
        }
    });
    Some(value)
}

/// Whether a request's `If-None-Match` (or, without it, `If-Modified-Since`) is
/// satisfied by a response with `headers`.
pub(crate) fn is_not_modified<'a, I>(request: &HeaderMap, headers: impl Fn() -> I) -> bool
where
    I: Iterator<Item = (&'a HeaderName, &'a HeaderValue)>,
{
    // One pass over the request's few headers, comparing names, finds both validators
    // (most requests carry neither) for less than hashing the two names to look them up.
    let mut none_match = false;
    let mut modified_since = None;
    for (name, value) in request {
        if name == header::IF_NONE_MATCH {
            none_match = true;
        } else if name == header::IF_MODIFIED_SINCE && modified_since.is_none() {
            modified_since = Some(value);
        }
    }
    let find = |wanted: &HeaderName| headers().find(|(n, _)| *n == wanted).map(|(_, v)| v);
    if none_match {
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
    let Some(since) = modified_since.and_then(|v| httpdate::parse_http_date(v.to_str().ok()?).ok())
    else {
        // No date to compare: the page's own `Last-Modified` is not even parsed.
        return false;
    };
    let modified =
        find(&header::LAST_MODIFIED).and_then(|v| httpdate::parse_http_date(v.to_str().ok()?).ok());
    modified.is_some_and(|modified| modified <= since)
}

pub(crate) fn set_status(headers: &mut HeaderMap, value: std::fmt::Arguments<'_>) {
    if let Ok(value) = HeaderValue::from_str(&value.to_string()) {
        headers.insert(CACHE_STATUS, value);
    }
}

/// A response that went around the cache, with its `Cache-Status`.
pub(crate) fn forward(cache: Option<&Cache>, mut response: Response, why: Forward) -> Response {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_values_are_of_their_own_name_way_and_second() {
        // 3, 11 and -5 share a slot of the thread's table.
        let cases = [
            ("cache-page", Served::Hit, 3, "cache-page; hit; ttl=3"),
            ("cache-page", Served::Hit, 11, "cache-page; hit; ttl=11"),
            (
                "cache-page",
                Served::Superseded,
                11,
                "cache-page; hit; detail=invalidated; ttl=11",
            ),
            (
                "cache-page",
                Served::Collapsed,
                11,
                "cache-page; fwd=uri-miss; collapsed; ttl=11",
            ),
            ("edge", Served::Hit, 11, "edge; hit; ttl=11"),
            ("cache-page", Served::Hit, -5, "cache-page; hit; ttl=-5"),
        ];
        for round in 0..2 {
            for (name, served, ttl, text) in cases {
                let value = status_value(name, served, ttl).unwrap();
                assert_eq!(value.to_str().unwrap(), text, "round {round}");
            }
        }
        // Asked again at once, the same value is shared, not built anew.
        let first = status_value("cache-page", Served::Hit, 42).unwrap();
        let again = status_value("cache-page", Served::Hit, 42).unwrap();
        assert_eq!(first.as_bytes().as_ptr(), again.as_bytes().as_ptr());
    }

    #[test]
    fn tabled_numbers_are_the_numbers_themselves() {
        for n in (0..TABLED + 10).chain([u64::MAX]) {
            assert_eq!(
                small_number(n).to_str().unwrap(),
                n.to_string(),
                "number {n}"
            );
        }
    }
}
