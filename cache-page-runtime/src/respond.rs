//! Responses built by the cache: hits, `304 Not Modified`, and `Cache-Status` on
//! responses that went around it.

use std::{
    cell::RefCell,
    sync::{Arc, LazyLock},
    time::Duration,
};

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
    entry: &Arc<Entry>,
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
    let left = remaining(entry.ttl, age);
    let age = age.as_secs();
    let status_name = cache.cache_status();
    // Preconditions apply only to what would be a 2xx (RFC 9110 §13.2.1).
    let not_modified = entry.status.is_success()
        && is_not_modified(&parts.headers, || entry.headers.iter().map(|(n, v)| (n, v)));
    // Whether the page came with a `Cache-Status` of its own (from caches nearer the
    // origin, which a handler that proxies may pass on).
    let upstream;
    let mut response = if not_modified {
        let mut response = Response::new(Body::empty());
        *response.status_mut() = StatusCode::NOT_MODIFIED;
        let headers = response.headers_mut();
        headers.reserve(entry.headers.len() + 2);
        for (name, value) in &entry.headers {
            if policy::kept_in_304(name) {
                headers.append(name.clone(), value.clone());
            }
        }
        upstream = status_name.is_some() && has_status(entry);
        response
    } else {
        let body = if parts.method == Method::HEAD {
            Body::empty()
        } else {
            Body::from(entry.body.clone())
        };
        let mut response = Response::new(body);
        *response.status_mut() = entry.status;
        let headers;
        (headers, upstream) = head(entry, status_name.is_some());
        *response.headers_mut() = headers;
        response
    };
    let headers = response.headers_mut();
    // A hit's head has the placeholders; a `304`'s, built above, does not.
    let placed = !not_modified;
    let age = small_number(age);
    if placed {
        put(headers, AGE_AT, &header::AGE, age);
    } else {
        headers.insert(header::AGE, age);
    }
    if let Some(name) = status_name {
        // Negative once stale (RFC 9211 §2.4); a superseded page is stale already.
        let ttl = match served {
            Served::Superseded => 0,
            _ => left,
        };
        let value = status_value(name, served, ttl);
        let value = match value {
            Some(ours) if upstream => after_upstream(
                entry
                    .headers
                    .iter()
                    .filter(|(n, _)| *n == CACHE_STATUS)
                    .map(|(_, v)| v),
                ours.as_bytes(),
            ),
            value => value,
        };
        match value {
            Some(value) if placed => put(headers, STATUS_AT, &CACHE_STATUS, value),
            Some(value) => {
                headers.insert(CACHE_STATUS, value);
            }
            None => {
                headers.remove(CACHE_STATUS);
            }
        }
    }
    response
}

/// The freshness an entry of `ttl` has left at `age`, in whole seconds for
/// `Cache-Status`: while fresh, the `ttl` less the `Age` the hit sends (so that the
/// two agree); once stale, minus the seconds past, rounded up, so that a stale page
/// never shows `ttl=0` (RFC 9211 §2.4).
fn remaining(ttl: Duration, age: Duration) -> i64 {
    let secs = |d: Duration| i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
    if age < ttl {
        secs(ttl) - secs(age)
    } else {
        let past = age - ttl;
        let rounded_up = secs(past).saturating_add(i64::from(past.subsec_nanos() > 0));
        -rounded_up.max(1)
    }
}

/// Entries whose head each thread keeps, and the largest body of such an entry: the
/// entries a thread keeps alive this way hold at most 128 KiB of bodies.
const HEADS: usize = 8;
const _: () = assert!(HEADS.is_power_of_two());
const HEAD_MAX_BODY: usize = 16 * 1024;

/// Where a hit's head has its placeholders among its values, in the order of
/// [`HeaderMap::iter_mut`] (which a clone of the map keeps): first the `Age`, then
/// the `Cache-Status` if it has one. A hit writes its own values there, without
/// hashing their names to find them.
const AGE_AT: usize = 0;
const STATUS_AT: usize = 1;

/// Writes `value` over the value at `at`, the placeholder of `name`; inserts it if
/// that value is not `name`'s (which [`head`] does not let happen).
fn put(headers: &mut HeaderMap, at: usize, name: &HeaderName, value: HeaderValue) {
    match headers.iter_mut().nth(at) {
        Some((found, slot)) if found == name => *slot = value,
        _ => {
            headers.insert(name.clone(), value);
        }
    }
}

/// A head [`head`] keeps: its entry, whether it has a `Cache-Status`, the headers,
/// and whether the entry has a `Cache-Status` of its own.
type KeptHead = (Arc<Entry>, bool, HeaderMap, bool);

thread_local! {
    static KEPT: RefCell<[Option<KeptHead>; HEADS]> =
        RefCell::new(std::array::from_fn(|_| None));
}

/// Where a thread keeps the head of `entry`: a Fibonacci hash of its address.
fn head_slot(entry: &Arc<Entry>) -> usize {
    let spread = (Arc::as_ptr(entry) as usize as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (spread >> (64 - HEADS.trailing_zeros())) as usize
}

/// The headers of a hit (not a `304`) on `entry`: its own, its `Content-Length`, and
/// placeholders for the `Age` (and, with `status`, the `Cache-Status`) that each hit
/// writes over, at [`AGE_AT`] and [`STATUS_AT`]; and, with `status`, whether the
/// entry has a `Cache-Status` of its own (which the head leaves out, and the hit's
/// value then follows).
///
/// Every hit on a page sends the same headers but those two, so each thread keeps the
/// head it built for each of a few entries that a store keeps (an entry some other
/// `Arc` holds): a hit on one of them clones a ready map, two allocations and a copy,
/// instead of hashing and inserting every header into a new one. A kept head holds its
/// entry, so the entry's address cannot be taken by another while the head is kept.
fn head(entry: &Arc<Entry>, status: bool) -> (HeaderMap, bool) {
    let slot = head_slot(entry);
    let kept = KEPT
        .try_with(|kept| {
            let kept = kept.try_borrow().ok()?;
            kept[slot]
                .as_ref()
                .filter(|(e, s, ..)| Arc::ptr_eq(e, entry) && *s == status)
                .map(|(_, _, headers, upstream)| (headers.clone(), *upstream))
        })
        .ok()
        .flatten();
    if let Some(kept) = kept {
        return kept;
    }
    let upstream = status && has_status(entry);
    let mut headers = HeaderMap::with_capacity(entry.headers.len() + 3);
    // The placeholders first, at `AGE_AT` and `STATUS_AT`; the entry's own values of
    // their names are not sent (a hit's `Cache-Status` follows the entry's, which it
    // reads from the entry).
    headers.insert(header::AGE, HeaderValue::from_static("0"));
    if status {
        headers.insert(CACHE_STATUS, HeaderValue::from_static("0"));
    }
    for (name, value) in &entry.headers {
        if name != header::AGE && !(status && name == CACHE_STATUS) {
            headers.append(name.clone(), value.clone());
        }
    }
    headers.insert(
        header::CONTENT_LENGTH,
        small_number(entry.body.len() as u64),
    );
    // An entry decoded for this request alone is not seen again.
    if Arc::strong_count(entry) > 1 && entry.body.len() <= HEAD_MAX_BODY {
        let _ = KEPT.try_with(|kept| {
            if let Ok(mut kept) = kept.try_borrow_mut() {
                kept[slot] = Some((Arc::clone(entry), status, headers.clone(), upstream));
            }
        });
    }
    (headers, upstream)
}

/// Whether `entry` has a `Cache-Status` of its own.
fn has_status(entry: &Entry) -> bool {
    entry.headers.iter().any(|(name, _)| *name == CACHE_STATUS)
}

/// `ours` as the last member after those of `upstream` (RFC 9211 §2: a cache adds its
/// member after those of the caches nearer the origin, and keeps them); `ours` alone
/// if the result would not be a valid value.
fn after_upstream<'a>(
    upstream: impl Iterator<Item = &'a HeaderValue>,
    ours: &[u8],
) -> Option<HeaderValue> {
    let mut all = Vec::new();
    for value in upstream {
        all.extend_from_slice(value.as_bytes());
        all.extend_from_slice(b", ");
    }
    all.extend_from_slice(ours);
    HeaderValue::from_bytes(&all)
        .or_else(|_| HeaderValue::from_bytes(ours))
        .ok()
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

/// Sets the cache's member of a response's `Cache-Status`, after those the response
/// already has (see [`after_upstream`]).
pub(crate) fn set_status(headers: &mut HeaderMap, value: std::fmt::Arguments<'_>) {
    let ours = value.to_string();
    if let Some(value) = after_upstream(headers.get_all(CACHE_STATUS).iter(), ours.as_bytes()) {
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
    fn a_stale_page_has_a_negative_ttl() {
        let s = Duration::from_secs;
        let ms = Duration::from_millis;
        // Fresh: the ttl less the whole seconds of `Age`, as the headers tell it.
        assert_eq!(remaining(s(60), ms(5_300)), 55);
        assert_eq!(remaining(s(1), ms(999)), 1);
        // Stale: never 0, whatever the rounding.
        assert_eq!(remaining(s(1), s(1)), -1);
        assert_eq!(remaining(s(1), ms(1_500)), -1);
        assert_eq!(remaining(s(1), s(2)), -1);
        assert_eq!(remaining(s(1), ms(2_001)), -2);
        assert_eq!(remaining(s(0), ms(10)), -1);
    }

    #[tokio::test]
    async fn a_stale_hit_says_how_stale_in_its_status() {
        let cache = Cache::builder(crate::MemoryStore::new()).build();
        let mut stale = entry(&[("content-type", "text/html")]);
        stale.ttl = Duration::from_secs(1);
        stale.grace = Duration::from_secs(60);
        let stale = Arc::new(stale);
        let (get, _) = http::Request::get("/").body(()).unwrap().into_parts();
        // Half a second past its freshness: `Age: 1` on a 1 s timeout, yet stale.
        let response = hit(
            &cache,
            &stale,
            &get,
            Served::Hit,
            Now(stale.created_ms + 1_500),
        );
        assert_eq!(response.headers()[header::AGE], "1");
        assert_eq!(response.headers()[CACHE_STATUS], "cache-page; hit; ttl=-1");
    }

    fn entry(headers: &[(&'static str, &'static str)]) -> Entry {
        Entry {
            status: StatusCode::OK,
            headers: headers
                .iter()
                .map(|(n, v)| (HeaderName::from_static(n), HeaderValue::from_static(v)))
                .collect(),
            body: Bytes::from_static(b"<p>page</p>"),
            created_ms: crate::entry::unix_ms(std::time::SystemTime::now()) - 5_000,
            ttl: std::time::Duration::from_secs(60),
            grace: std::time::Duration::ZERO,
            origin: "/".into(),
            scopes: vec![],
            vary: None,
        }
    }

    fn is_kept(entry: &Arc<Entry>) -> bool {
        KEPT.with_borrow(|kept| {
            kept[head_slot(entry)]
                .as_ref()
                .is_some_and(|(e, ..)| Arc::ptr_eq(e, entry))
        })
    }

    /// Every header of a hit as `name: value` lines, by name, the values of a name in
    /// their order.
    fn lines(response: &Response) -> Vec<String> {
        let mut lines: Vec<(&str, String)> = response
            .headers()
            .iter()
            .map(|(n, v)| (n.as_str(), format!("{n}: {}", v.to_str().unwrap())))
            .collect();
        lines.sort_by_key(|(name, _)| *name);
        lines.into_iter().map(|(_, line)| line).collect()
    }

    #[tokio::test]
    async fn a_kept_head_is_the_built_one_with_this_hits_age_and_status() {
        let named = Cache::builder(crate::MemoryStore::new())
            .cache_status(Some("edge"))
            .build();
        let unnamed = Cache::builder(crate::MemoryStore::new())
            .cache_status(None)
            .build();
        let stored = Arc::new(entry(&[
            ("content-type", "text/html"),
            ("link", "</a.css>; rel=preload"),
            ("link", "</b.js>; rel=preload"),
            // A handler's own: the cache's `Age` replaces it, its `Cache-Status`
            // follows it.
            ("age", "99"),
            ("cache-status", "origin; hit"),
        ]));
        let found = Arc::clone(&stored);
        let (get, _) = http::Request::get("/").body(()).unwrap().into_parts();
        let (head_request, _) = http::Request::head("/").body(()).unwrap().into_parts();
        let now = Now::read();
        let expected = |status: Option<&str>| {
            let mut lines = vec!["age: 5".to_owned()];
            lines.extend(status.map(|s| format!("cache-status: {s}")));
            lines.extend([
                "content-length: 11".to_owned(),
                "content-type: text/html".to_owned(),
                "link: </a.css>; rel=preload".to_owned(),
                "link: </b.js>; rel=preload".to_owned(),
            ]);
            lines
        };
        // Built, then kept; the other cache's head (without the status) replaces it,
        // and so on: each hit has its own cache's headers, never the other's.
        for round in 0..3 {
            for (cache, status) in [
                // After the handler's own (RFC 9211 §2).
                (&named, Some("origin; hit, edge; hit; ttl=55")),
                // Without a name of its own, the cache leaves the handler's.
                (&unnamed, Some("origin; hit")),
            ] {
                let response = hit(cache, &found, &get, Served::Hit, now);
                assert_eq!(lines(&response), expected(status), "round {round}");
                assert!(is_kept(&found), "round {round}");
                let again = hit(cache, &found, &head_request, Served::Hit, now);
                assert_eq!(lines(&again), expected(status), "HEAD, round {round}");
                let body = axum::body::to_bytes(response.into_body(), usize::MAX);
                assert_eq!(&body.await.unwrap()[..], b"<p>page</p>");
            }
        }
        // An entry no one else holds (decoded for one request) is not kept.
        let alone = Arc::new(entry(&[("content-type", "text/plain")]));
        let response = hit(&unnamed, &alone, &get, Served::Hit, now);
        assert_eq!(response.headers()["content-type"], "text/plain");
        assert!(!is_kept(&alone));
        drop(stored);
    }

    #[test]
    fn put_writes_over_its_placeholder_and_inserts_when_it_is_not_there() {
        let mut headers = HeaderMap::new();
        headers.insert(header::AGE, HeaderValue::from_static("0"));
        headers.insert(CACHE_STATUS, HeaderValue::from_static("0"));
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html"));
        put(&mut headers, AGE_AT, &header::AGE, small_number(7));
        put(
            &mut headers,
            STATUS_AT,
            &CACHE_STATUS,
            HeaderValue::from_static("edge; hit; ttl=3"),
        );
        let all: Vec<_> = headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.to_str().unwrap()))
            .collect();
        assert_eq!(
            all,
            [
                ("age", "7"),
                ("cache-status", "edge; hit; ttl=3"),
                ("content-type", "text/html"),
            ]
        );
        // Another name where the placeholder should be: that value stays, and the
        // one put is inserted under its own name.
        let mut other = HeaderMap::new();
        other.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html"));
        put(&mut other, AGE_AT, &header::AGE, small_number(7));
        put(
            &mut other,
            STATUS_AT,
            &CACHE_STATUS,
            HeaderValue::from_static("x"),
        );
        assert_eq!(other[header::CONTENT_TYPE], "text/html");
        assert_eq!(other[header::AGE], "7");
        assert_eq!(other[CACHE_STATUS], "x");
        assert_eq!(other.len(), 3);
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
