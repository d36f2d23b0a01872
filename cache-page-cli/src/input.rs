//! Checks and conversions of what the operator types: every one returns a message
//! clap shows as `error: invalid value '…' for '…': <message>` (exit status 2).

use std::time::Duration;

use cache_page_runtime::http::{HeaderValue, Uri};

/// `500`, `500ms` or `2s`: a positive duration, milliseconds when no unit is given.
pub fn parse_timeout(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (digits, unit_ms) = if let Some(d) = s.strip_suffix("ms") {
        (d, 1)
    } else if let Some(d) = s.strip_suffix('s') {
        (d, 1000)
    } else {
        (s, 1)
    };
    let n: u64 = digits
        .trim()
        .parse()
        .map_err(|_| "expected a number of milliseconds, such as 500, 500ms or 2s".to_owned())?;
    match n.checked_mul(unit_ms) {
        Some(0) => Err("the timeout must be more than 0".to_owned()),
        Some(ms) => Ok(Duration::from_millis(ms)),
        None => Err("the timeout is too large".to_owned()),
    }
}

/// A page's URL: `/path?query`, or an absolute `http(s)://host/path?query`. Characters
/// a browser percent-encodes in a URL (non-ASCII, space, `"<>\`{}`) are encoded the
/// same way, so `/café` means what a browser sends for it.
pub fn parse_url(s: &str) -> Result<Uri, String> {
    const EXPECTED: &str = "expected a path starting with '/' (such as /products?page=2) \
                            or an absolute http(s) URL (such as https://shop.test/products)";
    if s.is_empty() {
        return Err(format!("the URL is empty; {EXPECTED}"));
    }
    if !s.starts_with('/') && !s.contains("://") {
        return Err(EXPECTED.to_owned());
    }
    let encoded = percent_encode(s);
    let uri: Uri = encoded
        .parse()
        .map_err(|e| format!("not a valid URL ({e}); {EXPECTED}"))?;
    match uri.scheme_str() {
        Some("http" | "https") if uri.authority().is_some() => Ok(uri),
        Some(other) => Err(format!(
            "the scheme {other:?} is not http or https; {EXPECTED}"
        )),
        None if uri.authority().is_none() => Ok(uri),
        None => Err(EXPECTED.to_owned()),
    }
}

/// A URL path (`/products/42`), or an absolute URL whose path is taken; never a
/// query string.
pub fn parse_path(s: &str) -> Result<String, String> {
    let uri =
        parse_url(s).map_err(|e| e.replace("a path starting", "a path (no query) starting"))?;
    if uri.query().is_some() {
        return Err(
            "a path has no query string: `invalidate path` invalidates every \
                    query string of the path; use `invalidate url` for one URL"
                .to_owned(),
        );
    }
    Ok(cache_page_runtime::keys::canonical_path(uri.path()).into_owned())
}

/// A handler prefix: pages without a prefix have no prefix version, so an empty one
/// would name nothing.
pub fn parse_prefix(s: &str) -> Result<String, String> {
    if s.is_empty() {
        Err(
            "the prefix is empty; pages stored without a prefix have no prefix \
             version (invalidate them by group, path or URL)"
                .to_owned(),
        )
    } else {
        Ok(s.to_owned())
    }
}

/// A `Host` header value.
pub fn parse_host(s: &str) -> Result<HeaderValue, String> {
    if s.contains('/') {
        return Err("expected a host such as shop.test or shop.test:8080, not a URL".to_owned());
    }
    HeaderValue::from_str(s).map_err(|_| "not a valid Host header value".to_owned())
}

/// `GROUP=N`: a group's version given by hand. The group's name may itself hold `=`;
/// the version is what follows the last one.
pub fn parse_group_version(s: &str) -> Result<(String, u64), String> {
    let (group, version) = s
        .rsplit_once('=')
        .ok_or_else(|| "expected GROUP=N, such as views=1732147200000000".to_owned())?;
    let version: u64 = version.parse().map_err(|_| {
        format!(
            "the version {version:?} is not a whole number (versions are what \
             `cache-page version {group}` prints)"
        )
    })?;
    Ok((group.to_owned(), version))
}

/// Percent-encodes the bytes a browser encodes in a path: C0 controls, space, `"`,
/// `<`, `>`, `` ` ``, `{`, `}`, DEL and every non-ASCII byte. Everything else
/// (including `%`) is left as typed.
fn percent_encode(s: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        if b <= 0x20 || b >= 0x7f || b"\"<>`{}".contains(&b) {
            out.push('%');
            out.push(HEX[usize::from(b >> 4)] as char);
            out.push(HEX[usize::from(b & 0xf)] as char);
        } else {
            out.push(b as char);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts() {
        assert_eq!(parse_timeout("500"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_timeout("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_timeout("2s"), Ok(Duration::from_secs(2)));
        assert!(parse_timeout("0").is_err());
        assert!(parse_timeout("-1").is_err());
        assert!(parse_timeout("fast").is_err());
        assert!(parse_timeout("").is_err());
        assert!(parse_timeout("99999999999999999999s").is_err());
    }

    #[test]
    fn urls() {
        let uri = parse_url("/a/b?x=1").unwrap();
        assert_eq!((uri.path(), uri.query()), ("/a/b", Some("x=1")));
        let uri = parse_url("https://shop.test:8080/a?x=1").unwrap();
        assert_eq!(uri.authority().unwrap().as_str(), "shop.test:8080");
        assert_eq!(parse_url("/café").unwrap().path(), "/caf%C3%A9");
        assert_eq!(parse_url("/a b").unwrap().path(), "/a%20b");
        assert_eq!(parse_url("/a%20b").unwrap().path(), "/a%20b");
        for bad in [
            "",
            "foo",
            "shop.test/a",
            "ftp://h/a",
            "*",
            "http://",
            "http://[::1/",
        ] {
            assert!(parse_url(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn paths() {
        assert_eq!(parse_path("/p/42").unwrap(), "/p/42");
        assert_eq!(parse_path("http://h/p/42").unwrap(), "/p/42");
        assert!(parse_path("/p?x=1").unwrap_err().contains("invalidate url"));
        assert!(parse_path("p").is_err());
    }

    #[test]
    fn group_versions() {
        assert_eq!(parse_group_version("views=7"), Ok(("views".to_owned(), 7)));
        assert_eq!(parse_group_version("a=b=7"), Ok(("a=b".to_owned(), 7)));
        assert_eq!(parse_group_version("=7"), Ok((String::new(), 7)));
        assert!(parse_group_version("views").is_err());
        assert!(parse_group_version("views=").is_err());
        assert!(parse_group_version("views=-1").is_err());
        assert!(parse_group_version("views=x").is_err());
    }

    #[test]
    fn hosts() {
        assert!(parse_host("shop.test:8080").is_ok());
        assert!(parse_host("http://shop.test").is_err());
        assert!(parse_host("a\nb").is_err());
    }
}
