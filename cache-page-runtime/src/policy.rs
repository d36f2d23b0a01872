//! What may be stored, and the headers a cached response carries.

use std::time::{Duration, SystemTime};

use http::{
    HeaderMap, HeaderName, HeaderValue,
    header::{self, CACHE_CONTROL},
};

/// Why a response was not stored: logged, and sent as the `detail` of `Cache-Status`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Uncacheable {
    Status,
    NotModified,
    SetCookie,
    CacheControl,
    VaryStar,
    ZeroTimeout,
    TooManyHeaders,
    TooLarge,
    Streaming,
    Truncated,
}

impl Uncacheable {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Uncacheable::Status => "status",
            Uncacheable::NotModified => "not-modified",
            Uncacheable::SetCookie => "set-cookie",
            Uncacheable::CacheControl => "cache-control",
            Uncacheable::VaryStar => "vary-star",
            Uncacheable::ZeroTimeout => "zero-timeout",
            Uncacheable::TooManyHeaders => "too-many-headers",
            Uncacheable::TooLarge => "too-large",
            Uncacheable::Streaming => "streaming",
            Uncacheable::Truncated => "truncated",
        }
    }
}

/// Checks the headers that make a response unfit for a shared cache.
pub(crate) fn check(headers: &HeaderMap) -> Result<(), Uncacheable> {
    if headers.contains_key(header::SET_COOKIE) {
        return Err(Uncacheable::SetCookie);
    }
    if headers.len() > crate::entry::MAX_HEADERS {
        return Err(Uncacheable::TooManyHeaders);
    }
    for value in headers.get_all(CACHE_CONTROL) {
        let Ok(value) = value.to_str() else { continue };
        if directives(value).any(|(name, _)| {
            name.eq_ignore_ascii_case("private")
                || name.eq_ignore_ascii_case("no-store")
                || name.eq_ignore_ascii_case("no-cache")
        }) {
            return Err(Uncacheable::CacheControl);
        }
    }
    for value in headers.get_all(header::VARY) {
        if value
            .to_str()
            .is_ok_and(|v| v.split(',').any(|f| f.trim() == "*"))
        {
            return Err(Uncacheable::VaryStar);
        }
    }
    Ok(())
}

/// The directives of a `Cache-Control` value, as `(name, argument)`.
fn directives(value: &str) -> impl Iterator<Item = (&str, Option<&str>)> {
    value.split(',').filter_map(|d| {
        let d = d.trim();
        if d.is_empty() {
            return None;
        }
        Some(match d.split_once('=') {
            Some((n, v)) => (n.trim(), Some(v.trim().trim_matches('"'))),
            None => (d, None),
        })
    })
}

/// The `max-age` of a response, if it has one.
fn max_age(headers: &HeaderMap) -> Option<u64> {
    headers
        .get_all(CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(directives)
        .find(|(n, _)| n.eq_ignore_ascii_case("max-age"))
        .and_then(|(_, v)| v?.parse().ok())
}

/// Django's `patch_response_headers`: `Cache-Control: max-age` becomes the smaller of
/// the response's own and `timeout`, and `Expires` is added if absent.
pub(crate) fn patch_headers(headers: &mut HeaderMap, timeout: u64, now: SystemTime) {
    let age = max_age(headers).map_or(timeout, |own| own.min(timeout));
    let mut kept: Vec<String> = headers
        .get_all(CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(directives)
        .filter(|(n, _)| !n.eq_ignore_ascii_case("max-age"))
        .map(|(n, v)| match v {
            Some(v) => format!("{n}={v}"),
            None => n.to_owned(),
        })
        .collect();
    kept.push(format!("max-age={age}"));
    if let Ok(value) = HeaderValue::from_str(&kept.join(", ")) {
        headers.insert(CACHE_CONTROL, value);
    }
    if !headers.contains_key(header::EXPIRES) {
        let expires = httpdate::fmt_http_date(now + Duration::from_secs(age));
        if let Ok(value) = HeaderValue::from_str(&expires) {
            headers.insert(header::EXPIRES, value);
        }
    }
}

/// The request headers a response varies on: lowercase, sorted, without duplicates.
/// (`Vary: *` never reaches here: such responses are not stored.)
#[cfg(test)]
fn vary_names(headers: &HeaderMap) -> Vec<HeaderName> {
    names_in(headers.get_all(header::VARY).iter())
}

/// The request headers an entry varies on: lowercase, sorted, without duplicates.
pub(crate) fn vary_names_of(headers: &[(HeaderName, HeaderValue)]) -> Vec<HeaderName> {
    names_in(
        headers
            .iter()
            .filter(|(n, _)| n == header::VARY)
            .map(|(_, v)| v),
    )
}

fn names_in<'a>(values: impl Iterator<Item = &'a HeaderValue>) -> Vec<HeaderName> {
    let mut names: Vec<HeaderName> = values
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    names.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    names.dedup();
    names
}

/// The headers a `304 Not Modified` carries (RFC 9110 §15.4.5), plus `Last-Modified`.
pub(crate) fn kept_in_304(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "cache-control"
            | "content-location"
            | "date"
            | "etag"
            | "expires"
            | "vary"
            | "last-modified"
    )
}

/// Weak comparison of an `If-None-Match` member with an entity tag (RFC 9110 §8.8.3.2).
pub(crate) fn weak_match(candidate: &str, etag: &str) -> bool {
    candidate == "*" || candidate.trim_start_matches("W/") == etag.trim_start_matches("W/")
}

/// Hop-by-hop headers (RFC 9110 §7.6.1) are about one connection, never stored.
pub(crate) fn is_end_to_end(name: &HeaderName) -> bool {
    !matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(n, v)| (HeaderName::from_static(n), HeaderValue::from_static(v)))
            .collect()
    }

    #[test]
    fn vary_names_ignore_case_order_and_repeats() {
        let a = headers(&[("vary", "Cookie, accept-language"), ("vary", "COOKIE")]);
        let b = headers(&[("vary", "Accept-Language,cookie")]);
        assert_eq!(vary_names(&a), vary_names(&b));
        assert_eq!(vary_names(&a), ["accept-language", "cookie"]);
    }

    #[test]
    fn etags_compare_weakly() {
        assert!(weak_match("\"a\"", "\"a\""));
        assert!(weak_match("W/\"a\"", "\"a\""));
        assert!(weak_match("*", "\"a\""));
        assert!(!weak_match("\"b\"", "\"a\""));
    }

    #[test]
    fn plain_responses_pass() {
        assert!(check(&HeaderMap::new()).is_ok());
        assert!(check(&headers(&[("cache-control", "public, max-age=60")])).is_ok());
    }

    #[test]
    fn private_responses_are_not_stored() {
        for cc in [
            "private",
            "no-store",
            "max-age=3, No-Cache",
            "public, private=\"x\"",
        ] {
            let h: HeaderMap = [(CACHE_CONTROL, HeaderValue::from_static(cc))]
                .into_iter()
                .collect();
            assert_eq!(check(&h), Err(Uncacheable::CacheControl), "{cc}");
        }
        let h = headers(&[("set-cookie", "a=1")]);
        assert_eq!(check(&h), Err(Uncacheable::SetCookie));
        let h = headers(&[("vary", "Accept, *")]);
        assert_eq!(check(&h), Err(Uncacheable::VaryStar));
    }

    #[test]
    fn max_age_is_the_smaller_and_expires_is_added() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
        let mut h = headers(&[("cache-control", "public, max-age=30")]);
        patch_headers(&mut h, 3600, now);
        assert_eq!(h[CACHE_CONTROL], "public, max-age=30");
        assert_eq!(h[header::EXPIRES], "Sun, 09 Sep 2001 01:47:10 GMT");

        let mut h = headers(&[("cache-control", "max-age=99999"), ("expires", "0")]);
        patch_headers(&mut h, 60, now);
        assert_eq!(h[CACHE_CONTROL], "max-age=60");
        assert_eq!(h[header::EXPIRES], "0");

        let mut h = HeaderMap::new();
        patch_headers(&mut h, 60, now);
        assert_eq!(h[CACHE_CONTROL], "max-age=60");
    }
}
