//! Cache keys: the key functions that ship with the crate, and how a page's key is
//! hashed into the name of its entry.
//!
//! A page is identified by three things: its *prefix*, the *versions* of its groups at
//! the time it was stored, and the output of its *key function*. They are written into
//! one unambiguous byte string (every field is length-prefixed, so no value can be
//! mistaken for a separator) and hashed with md5. [`hash_key`] is that function; an
//! operator can call it to find the entry of a page by hand.

use std::fmt::Write as _;

use http::request::Parts;
use md5::{Digest, Md5};

/// A function that turns a request into the part of its cache key that tells pages
/// apart. Any `Fn(&Parts) -> String` is one, so plain functions and closures work.
///
/// # Example
///
/// ```
/// use cache_page_runtime::http::request::Parts;
///
/// // One page per language, whatever the query string says.
/// fn by_language(parts: &Parts) -> String {
///     let lang = parts
///         .headers
///         .get("accept-language")
///         .and_then(|v| v.to_str().ok())
///         .unwrap_or("");
///     format!("{}|{}", parts.uri.path(), lang)
/// }
/// # let _ = by_language;
/// ```
pub trait KeyFn: Fn(&Parts) -> String + Send + Sync + 'static {}
impl<F> KeyFn for F where F: Fn(&Parts) -> String + Send + Sync + 'static {}

/// The default key, like Django's: host, path and every query parameter in a canonical
/// order. The method is not part of it, so a `HEAD` finds the page a `GET` stored.
///
/// Two URLs that differ only in the order of their query parameters, or in how they
/// percent-encode them, share a page.
///
/// ```
/// use cache_page_runtime::http::Request;
/// use cache_page_runtime::keys::default_key;
///
/// let (a, _) = Request::get("http://shop.test/items?b=2&a=1").body(()).unwrap().into_parts();
/// let (b, _) = Request::get("http://shop.test/items?a=1&b=%32").body(()).unwrap().into_parts();
/// assert_eq!(default_key(&a), default_key(&b));
/// assert_eq!(default_key(&a), "shop.test/items?a=1&b=2");
/// ```
pub fn default_key(parts: &Parts) -> String {
    let mut out = String::with_capacity(64);
    out.push_str(host(parts));
    out.push_str(parts.uri.path());
    push_query(&mut out, parts.uri.query(), |_| true);
    out
}

/// The path alone: every query string shares one page.
///
/// ```
/// use cache_page_runtime::http::Request;
/// use cache_page_runtime::keys::path_key;
///
/// let (parts, _) = Request::get("/items?page=2").body(()).unwrap().into_parts();
/// assert_eq!(path_key(&parts), "/items");
/// ```
pub fn path_key(parts: &Parts) -> String {
    parts.uri.path().to_owned()
}

/// The query parameters alone, in canonical order (the seed package's
/// `generate_query_params_cache_key`): `/a?x=1` and `/b?x=1` share a page.
///
/// ```
/// use cache_page_runtime::http::Request;
/// use cache_page_runtime::keys::query_key;
///
/// let (parts, _) = Request::get("/items?z=1&a=2").body(()).unwrap().into_parts();
/// assert_eq!(query_key(&parts), "?a=2&z=1");
/// ```
pub fn query_key(parts: &Parts) -> String {
    let mut out = String::new();
    push_query(&mut out, parts.uri.query(), |_| true);
    out
}

/// The path plus only the query parameters named in `allowed`, in canonical order:
/// tracking parameters such as `utm_source` then do not split the cache.
///
/// ```
/// use cache_page_runtime::http::Request;
/// use cache_page_runtime::keys::query_params;
///
/// let key = query_params(&["page", "sort"]);
/// let (parts, _) = Request::get("/items?utm_source=x&sort=price&page=2")
///     .body(())
///     .unwrap()
///     .into_parts();
/// assert_eq!(key(&parts), "/items?page=2&sort=price");
/// ```
///
/// In the attribute: `#[cache_page(timeout = 60, key = keys::query_params(&["page"]))]`.
pub fn query_params(allowed: &'static [&'static str]) -> impl KeyFn {
    move |parts: &Parts| {
        let mut out = parts.uri.path().to_owned();
        push_query(&mut out, parts.uri.query(), |name| allowed.contains(&name));
        out
    }
}

fn host(parts: &Parts) -> &str {
    parts
        .uri
        .authority()
        .map(|a| a.as_str())
        .or_else(|| {
            parts
                .headers
                .get(http::header::HOST)
                .and_then(|v| v.to_str().ok())
        })
        .unwrap_or("")
}

/// Appends `?` and the decoded, re-encoded parameters of `query` that `keep` accepts,
/// sorted by name (the values of one name keep their order). Nothing is appended when
/// no parameter is kept.
fn push_query(out: &mut String, query: Option<&str>, keep: impl Fn(&str) -> bool) {
    let Some(query) = query.filter(|q| !q.is_empty()) else {
        return;
    };
    let mut pairs: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
        .filter(|(name, _)| keep(name))
        .map(|(n, v)| (n.into_owned(), v.into_owned()))
        .collect();
    if pairs.is_empty() {
        return;
    }
    pairs.sort_by(|a, b| a.0.cmp(&b.0));
    out.push('?');
    let start = out.len();
    let mut ser = form_urlencoded::Serializer::for_suffix(std::mem::take(out), start);
    ser.extend_pairs(pairs.iter().map(|(n, v)| (n.as_str(), v.as_str())));
    *out = ser.finish();
}

/// Hashes a page's identity into the name of its entry: the md5, in lowercase hex, of
/// `prefix`, each `(group, version)` pair, and `key`, each written as a netstring
/// (`<length>:<bytes>,`) after a field count.
///
/// The byte string hashed for prefix `p`, one group `views` at version `7` and key
/// `/items` is `1:p,1:1,5:views,1:7,6:/items,` ([`key_preimage`] returns it). In Redis
/// the entry then lives at `<namespace>:page:<hash>`.
///
/// ```
/// use cache_page_runtime::{hash_key, key_preimage};
///
/// let pre = key_preimage("p", &[("views", 7)], "/items");
/// assert_eq!(pre, "1:p,1:1,5:views,1:7,6:/items,");
/// let hash = hash_key("p", &[("views", 7)], "/items");
/// assert_eq!(hash.len(), 32);
/// ```
///
/// By hand, with the version read from Redis (`GET cache-page:version:views`):
///
/// ```sh
/// printf '%s' '1:p,1:1,5:views,1:7,6:/items,' | md5sum
/// ```
pub fn hash_key(prefix: &str, groups: &[(&str, u64)], key: &str) -> String {
    page_hash(prefix, groups, key, None)
}

/// [`hash_key`], plus a `caller` field for pages cached per caller. A preimage with
/// the field has two more fields than one without, so the two can never collide.
pub(crate) fn page_hash(
    prefix: &str,
    groups: &[(&str, u64)],
    key: &str,
    caller: Option<&str>,
) -> String {
    let mut hasher = Md5::new();
    let mut w = HashWriter(&mut hasher);
    write_preimage(&mut w, prefix, groups, key);
    if let Some(caller) = caller {
        let _ = write!(w, "6:caller,{}:{},", caller.len(), caller);
    }
    hex(&hasher.finalize())
}

/// The hash of one variant of a page that varies on request headers: derived from the
/// page's hash, its vary index's nonce, and each header's name and values (`None`
/// when absent, which differs from empty). It starts with a letter, where every page
/// preimage starts with a digit.
pub(crate) fn variant_hash(base: &str, nonce: u64, headers: &[(&str, Option<String>)]) -> String {
    let mut hasher = Md5::new();
    let mut w = HashWriter(&mut hasher);
    let _ = write!(w, "variant,{}:{},{},", base.len(), base, nonce);
    for (name, value) in headers {
        let _ = write!(w, "{}:{},", name.len(), name);
        match value {
            Some(v) => {
                let _ = write!(w, "1{}:{},", v.len(), v);
            }
            None => {
                let _ = write!(w, "0,");
            }
        }
    }
    hex(&hasher.finalize())
}

/// A short digest of a secret (such as an `Authorization` value), so that it is never
/// written to a store in clear.
pub(crate) fn digest(secret: &[u8]) -> String {
    hex(&Md5::digest(secret))
}

/// The canonical URL of a request, for [`Version::Url`](crate::Version): the path and
/// every query parameter in canonical order, without the host.
pub(crate) fn canonical_url(path: &str, query: Option<&str>) -> String {
    let mut out = path.to_owned();
    push_query(&mut out, query, |_| true);
    out
}

/// The exact byte string [`hash_key`] hashes: `prefix`, the number of groups, each
/// group's name and version, and `key`, each as a netstring `<length>:<bytes>,`.
pub fn key_preimage(prefix: &str, groups: &[(&str, u64)], key: &str) -> String {
    let mut out = String::new();
    write_preimage(&mut out, prefix, groups, key);
    out
}

fn write_preimage(out: &mut impl std::fmt::Write, prefix: &str, groups: &[(&str, u64)], key: &str) {
    // Writing to a String or to a hasher cannot fail, so the results are ignored.
    let _ = write!(out, "{}:{},", prefix.len(), prefix);
    let count = groups.len().to_string();
    let _ = write!(out, "{}:{},", count.len(), count);
    for (name, version) in groups {
        let version = version.to_string();
        let _ = write!(
            out,
            "{}:{},{}:{},",
            name.len(),
            name,
            version.len(),
            version
        );
    }
    let _ = write!(out, "{}:{},", key.len(), key);
}

struct HashWriter<'a>(&'a mut Md5);

impl std::fmt::Write for HashWriter<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.update(s.as_bytes());
        Ok(())
    }
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[(b >> 4) as usize] as char);
        out.push(DIGITS[(b & 0xf) as usize] as char);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Request;

    fn parts(uri: &str) -> Parts {
        Request::get(uri).body(()).unwrap().into_parts().0
    }

    #[test]
    fn default_key_sorts_and_normalises_the_query() {
        assert_eq!(default_key(&parts("/a?b=2&a=1")), "/a?a=1&b=2");
        assert_eq!(
            default_key(&parts("/a?a=%31")),
            default_key(&parts("/a?a=1"))
        );
        assert_eq!(default_key(&parts("/a?")), "/a");
        assert_eq!(default_key(&parts("/a")), "/a");
    }

    #[test]
    fn default_key_keeps_the_order_of_repeated_names() {
        assert_ne!(
            default_key(&parts("/a?t=1&t=2")),
            default_key(&parts("/a?t=2&t=1"))
        );
    }

    #[test]
    fn default_key_includes_the_host() {
        let mut p = parts("/a");
        p.headers
            .insert(http::header::HOST, "one.test".parse().unwrap());
        let mut q = parts("/a");
        q.headers
            .insert(http::header::HOST, "two.test".parse().unwrap());
        assert_ne!(default_key(&p), default_key(&q));
        assert_eq!(default_key(&p), "one.test/a");
    }

    #[test]
    fn separators_in_values_never_collide() {
        // The seed package joined parts with ':' and '-'; these pairs must differ.
        assert_ne!(
            default_key(&parts("/?a=1-b:2")),
            default_key(&parts("/?a=1&b=2"))
        );
        assert_ne!(
            default_key(&parts("/?a=1%26b%3D2")),
            default_key(&parts("/?a=1&b=2"))
        );
        assert_ne!(hash_key("", &[], "/a-b"), hash_key("", &[], "/ab"));
        assert_ne!(hash_key("a:b", &[], "c"), hash_key("a", &[], "b:c"));
        assert_ne!(hash_key("a", &[], "bc"), hash_key("ab", &[], "c"));
        assert_ne!(
            hash_key("", &[("a", 1)], "x"),
            hash_key("", &[("a1", 1)], "x")
        );
        assert_ne!(
            hash_key("", &[("a", 1), ("b", 2)], "x"),
            hash_key("", &[("a", 12)], "x")
        );
        // A group whose name looks like a key must not collide with the key.
        assert_ne!(hash_key("", &[("k", 1)], ""), hash_key("", &[], "1:k,1:1,"));
    }

    #[test]
    fn preimage_round_trips_field_by_field() {
        let pre = key_preimage("p:1", &[("views", 42), ("x,y", 7)], "/a,b:c");
        // Parse it back: netstrings are self-delimiting.
        let mut rest = pre.as_str();
        let mut fields = Vec::new();
        while !rest.is_empty() {
            let (len, tail) = rest.split_once(':').unwrap();
            let len: usize = len.parse().unwrap();
            fields.push(&tail[..len]);
            assert_eq!(&tail[len..len + 1], ",");
            rest = &tail[len + 1..];
        }
        assert_eq!(fields, ["p:1", "2", "views", "42", "x,y", "7", "/a,b:c"]);
    }

    #[test]
    fn hash_is_md5_of_the_preimage() {
        // md5("") is well known; an empty preimage is not possible, so check a fixed one.
        assert_eq!(hex(&Md5::digest(b"")), "d41d8cd98f00b204e9800998ecf8427e");
        let pre = key_preimage("p", &[("views", 7)], "/items");
        assert_eq!(
            hash_key("p", &[("views", 7)], "/items"),
            hex(&Md5::digest(pre.as_bytes()))
        );
    }

    #[test]
    fn query_params_keeps_only_the_listed_names() {
        let key = query_params(&["page"]);
        assert_eq!(key(&parts("/l?utm=1&page=3")), "/l?page=3");
        assert_eq!(key(&parts("/l?utm=1")), "/l");
    }

    #[test]
    fn caller_and_variants_never_collide_with_plain_pages() {
        let plain = hash_key("", &[], "/a");
        assert_ne!(page_hash("", &[], "/a", Some("x")), plain);
        assert_ne!(
            page_hash("", &[], "/a", Some("x")),
            page_hash("", &[], "/a", Some("y"))
        );
        let v = |h: &[(&str, Option<String>)]| variant_hash(&plain, 1, h);
        assert_ne!(
            v(&[("cookie", None)]),
            v(&[("cookie", Some(String::new()))])
        );
        assert_ne!(v(&[("a", Some("1".into()))]), v(&[("a", Some("2".into()))]));
        assert_ne!(variant_hash(&plain, 1, &[]), variant_hash(&plain, 2, &[]));
    }

    #[test]
    fn canonical_url_sorts_the_query_and_drops_the_host() {
        assert_eq!(canonical_url("/p", Some("b=1&a=2")), "/p?a=2&b=1");
        assert_eq!(canonical_url("/p", None), "/p");
    }

    #[test]
    fn query_key_ignores_the_path() {
        assert_eq!(query_key(&parts("/a?x=1")), query_key(&parts("/b?x=1")));
    }
}
