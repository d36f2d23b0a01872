//! Cache keys: the key functions that ship with the crate, and how a page's key is
//! hashed into the name of its entry.
//!
//! A page is identified by three things: its *prefix*, the *versions* of its groups at
//! the time it was stored, and the output of its *key function*. They are written into
//! one unambiguous byte string (every field is length-prefixed, so no value can be
//! mistaken for a separator) and hashed with md5. [`hash_key`] is that function; an
//! operator can call it to find the entry of a page by hand.

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
/// percent-encode their path or their query, share a page (see [`canonical_path`]).
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
    default_key_and_url(parts).0
}

/// [`default_key`], the length of its host and the length of its path: the rest of
/// the key is the request's [`canonical_url`], which starts with the canonical path.
/// One string serves as all three.
pub(crate) fn default_key_and_url(parts: &Parts) -> (String, usize, usize) {
    let host = host(parts);
    let (path, query) = (parts.uri.path(), parts.uri.query());
    let mut out = String::with_capacity(host.len() + path.len() + query.map_or(0, |q| q.len() + 1));
    out.push_str(host);
    push_path(&mut out, path);
    let path_len = out.len() - host.len();
    push_query(&mut out, query, |_| true);
    (out, host.len(), path_len)
}

/// A URL path in canonical form (RFC 3986 §6.2.2): percent-encoded letters, digits and
/// `-._~` decoded, every other percent-encoding in upper case, and the characters a
/// path cannot hold as they are (spaces, non-ASCII text, `?`, `#`…) percent-encoded
/// as UTF-8. `/caf%C3%A9`, `/caf%c3%a9` and `/café` are one path, as are `/%61bc`
/// and `/abc`; `/a%2Fb` stays apart from `/a/b`.
///
/// The keys that hold a path ([`default_key`], [`path_key`], [`query_params`]) and the
/// path and URL versions that [`Cache::invalidate_path`](crate::Cache::invalidate_path)
/// and [`Cache::invalidate_url`](crate::Cache::invalidate_url) bump hold it in this
/// form, so a page can be invalidated by the path a request asked for or by its
/// decoded text.
///
/// ```
/// use cache_page_runtime::keys::canonical_path;
///
/// assert_eq!(canonical_path("/maybe/café"), "/maybe/caf%C3%A9");
/// assert_eq!(canonical_path("/maybe/caf%c3%a9"), "/maybe/caf%C3%A9");
/// assert_eq!(canonical_path("/%61bc"), "/abc");
/// assert_eq!(canonical_path("/a%2fb"), "/a%2Fb");
/// assert_eq!(canonical_path("/items/42"), "/items/42");
/// ```
pub fn canonical_path(path: &str) -> std::borrow::Cow<'_, str> {
    if path.bytes().all(kept_in_path) {
        return std::borrow::Cow::Borrowed(path);
    }
    let mut out = String::with_capacity(path.len() + 8);
    push_encoded_path(&mut out, path);
    std::borrow::Cow::Owned(out)
}

/// Bytes a canonical path holds as they are: unreserved, sub-delimiters, `:`, `@` and
/// `/` (RFC 3986 §3.3). Not `%`: an encoding may need its case or its need checked.
fn kept_in_path(b: u8) -> bool {
    const KEPT: [bool; 256] = {
        let mut kept = [false; 256];
        let mut b = 0;
        while b < 256 {
            kept[b] = (b as u8).is_ascii_alphanumeric();
            b += 1;
        }
        let others = b"-._~!$&'()*+,;=:@/";
        let mut i = 0;
        while i < others.len() {
            kept[others[i] as usize] = true;
            i += 1;
        }
        kept
    };
    KEPT[usize::from(b)]
}

/// Writes [`canonical_path`] of `path` to `out`.
fn push_path(out: &mut String, path: &str) {
    if path.bytes().all(kept_in_path) {
        out.push_str(path);
    } else {
        push_encoded_path(out, path);
    }
}

/// Writes [`canonical_path`] of a `path` that holds a byte it does not keep as it is.
fn push_encoded_path(out: &mut String, path: &str) {
    let bytes = path.as_bytes();
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let mut encoded = Vec::with_capacity(bytes.len() + 8);
    let mut at = 0;
    while at < bytes.len() {
        let b = bytes[at];
        if b == b'%'
            && let (Some(hi), Some(lo)) = (
                bytes.get(at + 1).copied().and_then(hex),
                bytes.get(at + 2).copied().and_then(hex),
            )
        {
            let decoded = hi << 4 | lo;
            if decoded.is_ascii_alphanumeric() || matches!(decoded, b'-' | b'.' | b'_' | b'~') {
                encoded.push(decoded);
            } else {
                encoded.extend_from_slice(&[b'%', HEX[hi as usize], HEX[lo as usize]]);
            }
            at += 3;
            continue;
        }
        if kept_in_path(b) {
            encoded.push(b);
        } else {
            // A `%` that starts no encoding is encoded itself.
            encoded.extend_from_slice(&[b'%', HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]]);
        }
        at += 1;
    }
    // Only ASCII was written.
    out.push_str(std::str::from_utf8(&encoded).unwrap_or_default());
}

/// The path alone, in [canonical form](canonical_path): every query string shares one
/// page.
///
/// ```
/// use cache_page_runtime::http::Request;
/// use cache_page_runtime::keys::path_key;
///
/// let (parts, _) = Request::get("/items?page=2").body(()).unwrap().into_parts();
/// assert_eq!(path_key(&parts), "/items");
/// ```
pub fn path_key(parts: &Parts) -> String {
    canonical_path(parts.uri.path()).into_owned()
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
        let mut out = String::new();
        push_path(&mut out, parts.uri.path());
        push_query(&mut out, parts.uri.query(), |name| allowed.contains(&name));
        out
    }
}

fn host(parts: &Parts) -> &str {
    parts
        .uri
        .authority()
        .map(|a| a.as_str())
        .or_else(|| first_header(&parts.headers, &http::header::HOST).and_then(|v| v.to_str().ok()))
        .unwrap_or("")
}

/// The first value of `name` in `headers`, found by comparing names in order rather
/// than by hashing `name`: for the dozen or so headers of a request that is cheaper,
/// and `Host` comes first in most.
pub(crate) fn first_header<'h>(
    headers: &'h http::HeaderMap,
    name: &http::HeaderName,
) -> Option<&'h http::HeaderValue> {
    headers.iter().find(|(n, _)| *n == name).map(|(_, v)| v)
}

/// Appends `?` and the decoded, re-encoded parameters of `query` that `keep` accepts,
/// sorted by name (the values of one name keep their order). Nothing is appended when
/// no parameter is kept.
fn push_query(out: &mut String, query: Option<&str>, keep: impl Fn(&str) -> bool) {
    let Some(query) = query.filter(|q| !q.is_empty()) else {
        return;
    };
    if is_canonical(query) && query.split('&').all(|pair| keep(name_of(pair))) {
        out.push('?');
        out.push_str(query);
        return;
    }
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

/// Whether `query` is already what [`push_query`] would write for it: only bytes the
/// serializer keeps as they are, every pair `name=value` (one `=`), names in order.
/// Most real queries are, and then nothing needs parsing or allocating.
fn is_canonical(query: &str) -> bool {
    let kept = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'*' | b'-' | b'.' | b'_');
    let bytes = query.as_bytes();
    let mut previous: &[u8] = &[];
    let mut at = 0;
    loop {
        let start = at;
        let mut equals = None;
        while at < bytes.len() && bytes[at] != b'&' {
            match bytes[at] {
                b'=' if equals.is_none() => equals = Some(at),
                b if kept(b) => {}
                _ => return false,
            }
            at += 1;
        }
        let Some(equals) = equals else {
            return false;
        };
        let name = &bytes[start..equals];
        if name < previous {
            return false;
        }
        previous = name;
        if at == bytes.len() {
            return true;
        }
        at += 1;
    }
}

fn name_of(pair: &str) -> &str {
    pair.split_once('=').map_or(pair, |(name, _)| name)
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
/// By hand, with the version read from Redis (`GET cache-page:group:views`):
///
/// ```sh
/// printf '%s' '1:p,1:1,5:views,1:7,6:/items,' | md5sum
/// ```
pub fn hash_key(prefix: &str, groups: &[(&str, u64)], key: &str) -> String {
    page_hash(prefix, groups.iter().copied(), key, None)
}

/// [`hash_key`], plus a `caller` field for pages cached per caller. A preimage with
/// the field has two more fields than one without, so the two can never collide.
pub(crate) fn page_hash<'a, G>(prefix: &str, groups: G, key: &str, caller: Option<&str>) -> String
where
    G: IntoIterator<Item = (&'a str, u64), IntoIter: ExactSizeIterator>,
{
    let mut pre = Preimage::new();
    write_preimage(&mut pre, prefix, groups, key);
    if let Some(caller) = caller {
        put_field(&mut pre, b"caller");
        put_field(&mut pre, caller.as_bytes());
    }
    match pre.spilled {
        None => memo::hash(&pre.buf[..pre.len]),
        Some(hasher) => hex(&hasher.finalize()),
    }
}

/// A preimage as it is written: kept on the stack while it fits (most do), so that it
/// is hashed in one call and can be looked up in the [`memo`]; hashed piece by piece
/// once it does not.
struct Preimage {
    buf: [u8; Preimage::CAPACITY],
    len: usize,
    /// The hasher the preimage went on to once it outgrew the buffer.
    spilled: Option<Md5>,
}

impl Preimage {
    const CAPACITY: usize = 256;

    fn new() -> Self {
        Preimage {
            buf: [0; Self::CAPACITY],
            len: 0,
            spilled: None,
        }
    }
}

impl Sink for Preimage {
    #[inline]
    fn put(&mut self, bytes: &[u8]) {
        if let Some(hasher) = &mut self.spilled {
            hasher.update(bytes);
        } else if let Some(room) = self.buf.get_mut(self.len..self.len + bytes.len()) {
            copy(room, bytes);
            self.len += bytes.len();
        } else {
            let mut hasher = Md5::new();
            hasher.update(&self.buf[..self.len]);
            hasher.update(bytes);
            self.spilled = Some(hasher);
        }
    }

    #[inline]
    fn put_byte(&mut self, byte: u8) {
        match self.buf.get_mut(self.len) {
            Some(slot) if self.spilled.is_none() => {
                *slot = byte;
                self.len += 1;
            }
            _ => self.put(&[byte]),
        }
    }
}

/// `dst.copy_from_slice(src)`, with the short pieces a preimage is mostly made of
/// (lengths, versions, short names) copied in place rather than by a call to `memcpy`.
fn copy(dst: &mut [u8], src: &[u8]) {
    let n = src.len();
    match n {
        0 => {}
        1..=3 => {
            dst[0] = src[0];
            dst[n / 2] = src[n / 2];
            dst[n - 1] = src[n - 1];
        }
        4..=7 => {
            dst[..4].copy_from_slice(&src[..4]);
            dst[n - 4..].copy_from_slice(&src[n - 4..]);
        }
        8..=16 => {
            dst[..8].copy_from_slice(&src[..8]);
            dst[n - 8..].copy_from_slice(&src[n - 8..]);
        }
        _ => dst.copy_from_slice(src),
    }
}

/// The hashes of the preimages each thread hashed last. A page's hash is computed on
/// every request for it; most requests are for pages asked for a moment before, so
/// each thread keeps a small direct-mapped table of preimage → hash. A slot is used
/// only when its preimage is byte for byte the one asked for, so the table can make a
/// hash faster, never different.
mod memo {
    use std::cell::RefCell;

    use md5::{Digest, Md5};

    const SLOTS: usize = 128;

    struct Slot {
        preimage: Vec<u8>,
        hex: String,
    }

    thread_local! {
        static TABLE: RefCell<[Option<Slot>; SLOTS]> = const { RefCell::new([const { None }; SLOTS]) };
    }

    /// Which slot a preimage may be memoised in: a multiplicative hash of its 8-byte
    /// words (only the slot depends on it; equality is checked in full).
    fn slot_of(bytes: &[u8]) -> usize {
        const K: u64 = 0x9e37_79b9_7f4a_7c15;
        let mix = |h: u64, word: u64| (h ^ word).wrapping_mul(K).rotate_left(31);
        let mut words = bytes.chunks_exact(8);
        let mut h = bytes.len() as u64;
        for word in &mut words {
            h = mix(h, u64::from_le_bytes(word.try_into().expect("8 bytes")));
        }
        let mut last = [0u8; 8];
        for (to, from) in last.iter_mut().zip(words.remainder()) {
            *to = *from;
        }
        h = mix(h, u64::from_le_bytes(last));
        (h.wrapping_mul(K) >> 57) as usize % SLOTS
    }

    /// The md5 of `preimage` in lowercase hex.
    pub(super) fn hash(preimage: &[u8]) -> String {
        let slot = slot_of(preimage);
        TABLE
            .try_with(|table| {
                let mut table = table.try_borrow_mut().ok()?;
                let slot = &mut table[slot];
                if let Some(kept) = slot.as_ref().filter(|s| s.preimage == preimage) {
                    return Some(kept.hex.clone());
                }
                let hex = digest_hex(preimage);
                match slot {
                    Some(kept) => {
                        kept.preimage.clear();
                        kept.preimage.extend_from_slice(preimage);
                        kept.hex.clone_from(&hex);
                    }
                    None => {
                        *slot = Some(Slot {
                            preimage: preimage.to_vec(),
                            hex: hex.clone(),
                        });
                    }
                }
                Some(hex)
            })
            .ok()
            .flatten()
            // While the thread is torn down, or re-entered: hashed without the table.
            .unwrap_or_else(|| digest_hex(preimage))
    }

    fn digest_hex(preimage: &[u8]) -> String {
        super::hex(&Md5::digest(preimage))
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn memoised_hashes_are_the_md5_of_their_own_preimage() {
            // Many more preimages than slots, asked for twice, in two orders: every
            // answer, memoised or not, is the md5 of the preimage asked for.
            let preimages: Vec<Vec<u8>> = (0..4 * SLOTS)
                .map(|i| format!("0:,1:0,{}:/page/{i},", 6 + i.to_string().len()).into_bytes())
                .collect();
            for round in 0..2 {
                for (i, pre) in preimages.iter().enumerate() {
                    let pre = if round == 0 {
                        pre
                    } else {
                        &preimages[preimages.len() - 1 - i]
                    };
                    let want = super::super::hex(&Md5::digest(pre));
                    assert_eq!(hash(pre), want);
                    assert_eq!(hash(pre), want, "asked twice");
                }
            }
        }

        #[test]
        fn preimages_sharing_a_slot_never_share_a_hash() {
            let a = b"1:a,1:0,1:x,".to_vec();
            let mut b = None;
            for i in 0..100_000u32 {
                let candidate = format!("1:b,1:0,{}:{i},", i.to_string().len()).into_bytes();
                if slot_of(&candidate) == slot_of(&a) {
                    b = Some(candidate);
                    break;
                }
            }
            let b = b.expect("a preimage in the same slot");
            let (ha, hb) = (hash(&a), hash(&b));
            assert_ne!(ha, hb);
            assert_eq!(hash(&a), ha);
            assert_eq!(hash(&b), hb);
        }
    }
}

/// The hash of one variant of a page that varies on request headers: derived from the
/// page's hash, its vary index's nonce, and each header's name and values (`None`
/// when absent, which differs from empty). It starts with a letter, where every page
/// preimage starts with a digit.
pub(crate) fn variant_hash(base: &str, nonce: u64, headers: &[(&str, Option<String>)]) -> String {
    let mut hasher = Md5::new();
    hasher.put(b"variant,");
    put_field(&mut hasher, base.as_bytes());
    put_number(&mut hasher, nonce);
    hasher.put(b",");
    for (name, value) in headers {
        put_field(&mut hasher, name.as_bytes());
        match value {
            Some(v) => {
                hasher.put(b"1");
                put_field(&mut hasher, v.as_bytes());
            }
            None => hasher.put(b"0,"),
        }
    }
    hex(&hasher.finalize())
}

/// A short digest of a secret (such as an `Authorization` value), so that it is never
/// written to a store in clear.
pub(crate) fn digest(secret: &[u8]) -> String {
    hex(&Md5::digest(secret))
}

/// The `ETag` of a body whose handler gave none, unquoted: its XXH3 128-bit hash in
/// lowercase hex. A strong validator needs no more than a fixed hash that differs
/// when the bytes do; md5, as Django's `ConditionalGetMiddleware` uses, cost a
/// 1 KiB page's miss a quarter of its instructions and grows with the body at a few
/// hundred MB/s, where XXH3 runs at tens of GB/s. Neither resists a collision built
/// on purpose, so neither makes a validator more than that.
pub(crate) fn body_tag(body: &[u8]) -> String {
    hex(&xxhash_rust::xxh3::xxh3_128(body).to_be_bytes())
}

/// The canonical URL of a request, for [`Version::Url`](crate::Version): the path and
/// every query parameter in canonical order, without the host.
pub(crate) fn canonical_url(path: &str, query: Option<&str>) -> String {
    let mut out = String::with_capacity(path.len() + query.map_or(0, |q| q.len() + 1));
    push_path(&mut out, path);
    push_query(&mut out, query, |_| true);
    out
}

/// The exact byte string [`hash_key`] hashes: `prefix`, the number of groups, each
/// group's name and version, and `key`, each as a netstring `<length>:<bytes>,`.
pub fn key_preimage(prefix: &str, groups: &[(&str, u64)], key: &str) -> String {
    let mut out = Vec::new();
    write_preimage(&mut out, prefix, groups.iter().copied(), key);
    // Only `str`s and ASCII digits were written.
    String::from_utf8_lossy(&out).into_owned()
}

/// Where a preimage is written: a hasher, or a buffer for [`key_preimage`].
trait Sink {
    fn put(&mut self, bytes: &[u8]);

    /// One byte, such as a separator.
    fn put_byte(&mut self, byte: u8) {
        self.put(&[byte]);
    }
}

impl Sink for Md5 {
    fn put(&mut self, bytes: &[u8]) {
        self.update(bytes);
    }
}

impl Sink for Vec<u8> {
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

/// Writes `n` in decimal, without allocating.
fn put_number(out: &mut impl Sink, n: u64) {
    // Most are lengths and counts of one or two digits.
    match n {
        0..10 => out.put_byte(b'0' + n as u8),
        10..100 => {
            out.put_byte(b'0' + (n / 10) as u8);
            out.put_byte(b'0' + (n % 10) as u8);
        }
        _ => out.put(itoa::Buffer::new().format(n).as_bytes()),
    }
}

/// One netstring: `<length>:<bytes>,`.
fn put_field(out: &mut impl Sink, bytes: &[u8]) {
    put_number(out, bytes.len() as u64);
    out.put_byte(b':');
    out.put(bytes);
    out.put_byte(b',');
}

fn put_number_field(out: &mut impl Sink, n: u64) {
    put_field(out, itoa::Buffer::new().format(n).as_bytes());
}

fn write_preimage<'a, G>(out: &mut impl Sink, prefix: &str, groups: G, key: &str)
where
    G: IntoIterator<Item = (&'a str, u64), IntoIter: ExactSizeIterator>,
{
    let groups = groups.into_iter();
    put_field(out, prefix.as_bytes());
    put_number_field(out, groups.len() as u64);
    for (name, version) in groups {
        put_field(out, name.as_bytes());
        put_number_field(out, version);
    }
    put_field(out, key.as_bytes());
}

/// A digest of at most 16 bytes in lowercase hex.
fn hex(digest: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = [0u8; 32];
    for (pair, b) in out.chunks_exact_mut(2).zip(digest) {
        pair[0] = DIGITS[usize::from(b >> 4)];
        pair[1] = DIGITS[usize::from(b & 0xf)];
    }
    let len = 2 * digest.len().min(16);
    std::str::from_utf8(&out[..len])
        .expect("hex digits are ASCII")
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Request;

    fn parts(uri: &str) -> Parts {
        Request::get(uri).body(()).unwrap().into_parts().0
    }

    #[test]
    fn default_key_and_url_are_default_key_and_canonical_url() {
        for uri in [
            "/a?b=2&a=1",
            "http://shop.test/a?x=%31&x=0",
            "http://shop.test/a?b=1&a=2",
            "/",
            "/a?",
            "/p?a=1&a=1",
        ] {
            let parts = parts(uri);
            let url = canonical_url(parts.uri.path(), parts.uri.query());
            let (key, host_len, path_len) = default_key_and_url(&parts);
            assert_eq!(key, default_key(&parts), "{uri}");
            assert_eq!(&key[host_len..], url, "{uri}");
            assert_eq!(&url[..path_len], canonical_path(parts.uri.path()), "{uri}");
        }
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
    fn lengths_and_versions_are_written_in_decimal() {
        for n in (0..=300).chain([999, 1000, 12_345]) {
            let key = "k".repeat(n);
            let version = n as u64 * 7;
            assert_eq!(
                key_preimage("", &[("g", version)], &key),
                format!(
                    "0:,1:1,1:g,{}:{version},{n}:{key},",
                    version.to_string().len()
                ),
            );
        }
    }

    #[test]
    fn body_tags_are_xxh3_128_in_hex() {
        // The reference values of XXH3-128 for an empty input and for "a".
        assert_eq!(body_tag(b""), "99aa06d3014798d86001c324468d497f");
        assert_eq!(body_tag(b"a"), "a96faf705af16834e6c632b61e964e1f");
        assert_ne!(body_tag(b"page 1"), body_tag(b"page 2"));
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
    fn hash_is_md5_of_the_preimage_whatever_the_key_length() {
        // Every short length (the pieces copied in place), keys around md5 block
        // boundaries and the preimage buffer's end, and far past them.
        for len in (0..=300).chain([1000, 5000]) {
            let key: String = (0..len)
                .map(|i| char::from(b'a' + (i % 26) as u8))
                .collect();
            let groups = [("views", 7), ("a-longer-group-name", u64::MAX)];
            let pre = key_preimage("p", &groups, &key);
            assert_eq!(
                hash_key("p", &groups, &key),
                hex(&Md5::digest(pre.as_bytes())),
                "key of {len} bytes"
            );
        }
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
        assert_ne!(page_hash("", [], "/a", Some("x")), plain);
        assert_ne!(
            page_hash("", [], "/a", Some("x")),
            page_hash("", [], "/a", Some("y"))
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
    fn canonical_paths() {
        for (path, canonical) in [
            ("/", "/"),
            ("/a/b;c=d,e@f:g", "/a/b;c=d,e@f:g"),
            ("/%41%7e%2d%5F%2E", "/A~-_."),
            ("/a%2fb%3F", "/a%2Fb%3F"),
            ("/a b", "/a%20b"),
            ("/é", "/%C3%A9"),
            ("/100%", "/100%25"),
            ("/%zz%4", "/%25zz%254"),
            ("/%25", "/%25"),
            ("/a?b", "/a%3Fb"),
        ] {
            assert_eq!(canonical_path(path), canonical, "{path:?}");
            // Canonical already: written as it is.
            assert_eq!(canonical_path(canonical), canonical, "{canonical:?}");
        }
    }

    #[test]
    fn keys_hold_the_canonical_path() {
        let raw = parts("http://shop.test/caf%c3%a9/%61?b=2&a=1");
        assert_eq!(default_key(&raw), "shop.test/caf%C3%A9/a?a=1&b=2");
        assert_eq!(path_key(&raw), "/caf%C3%A9/a");
        assert_eq!(query_params(&["a"])(&raw), "/caf%C3%A9/a?a=1");
        assert_eq!(
            canonical_url(raw.uri.path(), raw.uri.query()),
            "/caf%C3%A9/a?a=1&b=2"
        );
    }

    #[test]
    fn canonical_url_sorts_the_query_and_drops_the_host() {
        assert_eq!(canonical_url("/p", Some("b=1&a=2")), "/p?a=2&b=1");
        assert_eq!(canonical_url("/p", None), "/p");
    }

    /// The fast path for canonical queries writes exactly what the slow path would.
    #[test]
    fn canonical_queries_are_kept_as_they_are() {
        for q in [
            "a=1&b=2",
            "a=1&a=2",
            "a=&b=",
            "A=1&a=1",
            "x.y=1*2-3_4",
            "a=1&b=2&b=1",
            "b=1&a=2",
            "a=%31",
            "a=1+2",
            "a",
            "a=1=2",
            "a=1&&b=2",
            "a=1&",
            "é=1",
            "a=1;b",
        ] {
            let mut slow = String::new();
            let parts = parts(&format!("/?{q}"));
            let mut pairs: Vec<(String, String)> = form_urlencoded::parse(q.as_bytes())
                .map(|(n, v)| (n.into_owned(), v.into_owned()))
                .collect();
            pairs.sort_by(|a, b| a.0.cmp(&b.0));
            if !pairs.is_empty() {
                slow.push('?');
                slow.push_str(
                    &form_urlencoded::Serializer::new(String::new())
                        .extend_pairs(pairs)
                        .finish(),
                );
            }
            assert_eq!(query_key(&parts), slow, "{q}");
            if is_canonical(q) {
                assert_eq!(slow, format!("?{q}"), "{q} is not canonical");
            }
        }
    }

    #[test]
    fn query_key_ignores_the_path() {
        assert_eq!(query_key(&parts("/a?x=1")), query_key(&parts("/b?x=1")));
    }
}
