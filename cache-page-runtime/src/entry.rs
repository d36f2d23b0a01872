//! A stored page: status, end-to-end headers, raw body bytes and creation time, and the
//! binary format it is written in.
//!
//! The format is versioned and every length in it is checked against the bytes that are
//! really there before anything is allocated, so a damaged, truncated or foreign value
//! decodes to an error (a miss), never to a panic or a huge allocation.
//!
//! ```text
//! magic "CPE" | format u8 = 1 | kind u8 (0 page, 1 vary index) | created unix-ms u64
//! | ttl secs u32 | grace secs u32 | status u16 | scope count u8 | scope version u64 *
//! | origin len u32 | origin | header count u16 | (name len u16, name, value len u32,
//! value)* | body len u32 | body
//! ```
//! All integers are big-endian. A vary index keeps the names its response varies on
//! as headers with empty values, and an 8-byte nonce as its body.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use http::{HeaderName, HeaderValue, StatusCode};

use crate::Error;

const MAGIC: &[u8; 3] = b"CPE";
const FORMAT: u8 = 1;
const FIXED_LEN: usize = 3 + 1 + 1 + 8 + 4 + 4 + 2 + 1 + 2;
const MAX_SCOPES: usize = 8;

/// Largest number of headers an entry may hold.
pub const MAX_HEADERS: usize = 1024;

/// A complete response as it is kept in a store.
///
/// ```
/// use std::time::Duration;
/// use cache_page_runtime::Entry;
/// use cache_page_runtime::http::{StatusCode, header};
///
/// let entry = Entry {
///     status: StatusCode::OK,
///     headers: vec![(header::CONTENT_TYPE, "text/html".parse().unwrap())],
///     body: "<h1>hi</h1>".into(),
///     created_ms: 1_700_000_000_000,
///     ttl: Duration::from_secs(60),
///     grace: Duration::ZERO,
///     origin: "/".into(),
///     scopes: vec![],
///     vary: None,
/// };
/// assert_eq!(Entry::decode(entry.encode()).unwrap(), entry);
/// assert!(Entry::decode("not an entry".into()).is_err());
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The response's status.
    pub status: StatusCode,
    /// Every end-to-end header, in order; a name may repeat.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// The body's raw bytes.
    pub body: Bytes,
    /// When the entry was created, in milliseconds since the Unix epoch.
    pub created_ms: u64,
    /// How long the entry is fresh.
    pub ttl: Duration,
    /// How long after `ttl` it may still be served stale while it is refreshed.
    pub grace: Duration,
    /// The canonical URL (`/path?query`) of the request the entry was stored for: the
    /// path and URL whose versions `scopes` holds.
    pub origin: String,
    /// The versions of the page's scopes (path, URL, prefix) when it was stored; the
    /// entry is valid only while they are unchanged.
    pub scopes: Vec<u64>,
    /// `Some` for a vary index: the entry says where the variants of a page that
    /// varies on request headers are, and holds no response of its own.
    pub vary: Option<VaryIndex>,
}

/// The second level of the Vary scheme (Django's): the request headers a page varies
/// on, learned from its response, and a nonce that the variants' keys are derived
/// from, so that replacing or deleting the index orphans every variant at once.
///
/// ```
/// use cache_page_runtime::{VaryIndex, http::header};
///
/// let index = VaryIndex { names: vec![header::ACCEPT_LANGUAGE], nonce: 7 };
/// assert_eq!(index.names[0], "accept-language");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VaryIndex {
    /// Lowercase header names, sorted, without duplicates.
    pub names: Vec<HeaderName>,
    /// Part of every variant's key.
    pub nonce: u64,
}

/// A request's clock reading in Unix milliseconds, taken once and used by every check
/// of that request: one clock read and one conversion, not one of each per check.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Now(pub(crate) u64);

impl Now {
    pub(crate) fn read() -> Self {
        Self::at(SystemTime::now())
    }

    pub(crate) fn at(time: SystemTime) -> Self {
        Now(unix_ms(time))
    }
}

impl Entry {
    /// The entry's age at `now`.
    pub fn age_at(&self, now: SystemTime) -> Duration {
        self.age(Now(unix_ms(now)))
    }

    pub(crate) fn age(&self, now: Now) -> Duration {
        Duration::from_millis(now.0.saturating_sub(self.created_ms))
    }

    pub(crate) fn is_stale(&self, now: Now) -> bool {
        self.age(now) >= self.ttl
    }

    /// Whether the entry is past its `ttl` and its `grace` at `now`: no store may
    /// serve it any more.
    pub(crate) fn is_expired(&self, now: Now) -> bool {
        self.age(now) >= self.store_ttl()
    }

    /// Whether the entry is past its `ttl` at `now` (it may still be in its grace).
    pub fn is_stale_at(&self, now: SystemTime) -> bool {
        self.is_stale(Now(unix_ms(now)))
    }

    /// About how many bytes the entry holds: its body, its headers and its origin.
    /// What the in-process caches count against their bounds.
    pub(crate) fn weight(&self) -> usize {
        self.body.len()
            + self.origin.len()
            + self
                .headers
                .iter()
                .map(|(n, v)| n.as_str().len() + v.len())
                .sum::<usize>()
    }

    /// How long the store should keep the entry: its `ttl` plus its `grace`.
    pub fn store_ttl(&self) -> Duration {
        self.ttl + self.grace
    }

    /// A vary index for `index`, with the times, scopes and origin of `page`.
    pub fn vary_index(index: VaryIndex, page: &Entry) -> Entry {
        Entry {
            status: StatusCode::OK,
            headers: Vec::new(),
            body: Bytes::new(),
            created_ms: page.created_ms,
            ttl: page.ttl,
            grace: page.grace,
            origin: page.origin.clone(),
            scopes: page.scopes.clone(),
            vary: Some(index),
        }
    }

    /// Writes the entry in the binary format above.
    pub fn encode(&self) -> Bytes {
        let empty = HeaderValue::from_static("");
        let (headers, body): (Vec<(&HeaderName, &HeaderValue)>, Bytes) = match &self.vary {
            None => (
                self.headers.iter().map(|(n, v)| (n, v)).collect(),
                self.body.clone(),
            ),
            Some(index) => (
                index.names.iter().map(|n| (n, &empty)).collect(),
                Bytes::copy_from_slice(&index.nonce.to_be_bytes()),
            ),
        };
        let headers_len: usize = headers
            .iter()
            .map(|(n, v)| 2 + n.as_str().len() + 4 + v.len())
            .sum();
        let mut out = BytesMut::with_capacity(
            FIXED_LEN
                + 8 * self.scopes.len()
                + 4
                + self.origin.len()
                + headers_len
                + 4
                + body.len(),
        );
        out.put_slice(MAGIC);
        out.put_u8(FORMAT);
        out.put_u8(u8::from(self.vary.is_some()));
        out.put_u64(self.created_ms);
        out.put_u32(secs_u32(self.ttl));
        out.put_u32(secs_u32(self.grace));
        out.put_u16(self.status.as_u16());
        out.put_u8(self.scopes.len().min(MAX_SCOPES) as u8);
        for v in self.scopes.iter().take(MAX_SCOPES) {
            out.put_u64(*v);
        }
        out.put_u32(self.origin.len() as u32);
        out.put_slice(self.origin.as_bytes());
        // The request path refuses responses with more than MAX_HEADERS headers.
        out.put_u16(headers.len().min(MAX_HEADERS) as u16);
        for (name, value) in headers.iter().take(MAX_HEADERS) {
            out.put_u16(name.as_str().len() as u16);
            out.put_slice(name.as_str().as_bytes());
            out.put_u32(value.len() as u32);
            out.put_slice(value.as_bytes());
        }
        out.put_u32(body.len() as u32);
        out.put_slice(&body);
        out.freeze()
    }

    /// Reads an entry written by [`encode`](Self::encode). The body is a slice of
    /// `raw`, not a copy.
    pub fn decode(raw: Bytes) -> Result<Entry, Error> {
        let mut buf = raw.clone();
        if buf.len() < FIXED_LEN || &buf[..3] != MAGIC {
            return Err(Error::Corrupt("not a cache-page entry"));
        }
        buf.advance(3);
        if buf.get_u8() != FORMAT {
            return Err(Error::Corrupt("unknown entry format version"));
        }
        let kind = buf.get_u8();
        if kind > 1 {
            return Err(Error::Corrupt("unknown entry kind"));
        }
        let created_ms = buf.get_u64();
        let ttl = Duration::from_secs(u64::from(buf.get_u32()));
        let grace = Duration::from_secs(u64::from(buf.get_u32()));
        let status =
            StatusCode::from_u16(buf.get_u16()).map_err(|_| Error::Corrupt("bad status"))?;
        let scope_count = usize::from(buf.get_u8());
        if scope_count > MAX_SCOPES || buf.remaining() < 8 * scope_count + 2 {
            return Err(Error::Corrupt("bad scopes"));
        }
        let scopes = (0..scope_count).map(|_| buf.get_u64()).collect();
        let origin = take(&mut buf, 4)?;
        let origin =
            String::from_utf8(origin.to_vec()).map_err(|_| Error::Corrupt("bad origin"))?;
        if buf.remaining() < 2 {
            return Err(Error::Corrupt("truncated"));
        }
        let count = usize::from(buf.get_u16());
        if count > MAX_HEADERS {
            return Err(Error::Corrupt("too many headers"));
        }
        // Each header takes at least 6 bytes, so a count larger than that is a lie and
        // must not size an allocation.
        let mut headers = Vec::with_capacity(count.min(buf.remaining() / 6));
        for _ in 0..count {
            let name = take(&mut buf, 2)?;
            let name =
                HeaderName::from_bytes(&name).map_err(|_| Error::Corrupt("bad header name"))?;
            let value = take(&mut buf, 4)?;
            let value = HeaderValue::from_maybe_shared(value)
                .map_err(|_| Error::Corrupt("bad header value"))?;
            headers.push((name, value));
        }
        let body = take(&mut buf, 4)?;
        if buf.has_remaining() {
            return Err(Error::Corrupt("trailing bytes"));
        }
        if kind == 1 {
            let nonce: [u8; 8] = body
                .as_ref()
                .try_into()
                .map_err(|_| Error::Corrupt("bad vary index"))?;
            let names = headers.into_iter().map(|(n, _)| n).collect();
            let index = VaryIndex {
                names,
                nonce: u64::from_be_bytes(nonce),
            };
            return Ok(Entry {
                status,
                headers: Vec::new(),
                body: Bytes::new(),
                created_ms,
                ttl,
                grace,
                origin,
                scopes,
                vary: Some(index),
            });
        }
        Ok(Entry {
            status,
            headers,
            body,
            created_ms,
            ttl,
            grace,
            origin,
            scopes,
            vary: None,
        })
    }
}

/// Splits off a field whose length is a big-endian integer of `width` bytes.
fn take(buf: &mut Bytes, width: usize) -> Result<Bytes, Error> {
    if buf.remaining() < width {
        return Err(Error::Corrupt("truncated"));
    }
    let len = match width {
        2 => usize::from(buf.get_u16()),
        _ => buf.get_u32() as usize,
    };
    if buf.remaining() < len {
        return Err(Error::Corrupt("truncated"));
    }
    Ok(buf.split_to(len))
}

fn secs_u32(d: Duration) -> u32 {
    u32::try_from(d.as_secs()).unwrap_or(u32::MAX)
}

/// Milliseconds since the Unix epoch.
pub(crate) fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Entry {
        Entry {
            status: StatusCode::OK,
            headers: vec![
                (
                    http::header::CONTENT_TYPE,
                    HeaderValue::from_static("text/html"),
                ),
                (
                    HeaderName::from_static("x-a"),
                    HeaderValue::from_static("1"),
                ),
                (
                    HeaderName::from_static("x-a"),
                    HeaderValue::from_static("2"),
                ),
            ],
            body: Bytes::from_static(b"\x00\xffbinary\r\n"),
            created_ms: 1_700_000_000_123,
            ttl: Duration::from_secs(3600),
            grace: Duration::from_secs(30),
            origin: "/a?b=c".to_owned(),
            scopes: vec![1, u64::MAX],
            vary: None,
        }
    }

    #[test]
    fn vary_index_round_trips() {
        let index = VaryIndex {
            names: vec![http::header::ACCEPT_LANGUAGE, http::header::COOKIE],
            nonce: 0xdead_beef_0000_0001,
        };
        let e = Entry::vary_index(index, &sample());
        assert_eq!(Entry::decode(e.encode()).unwrap(), e);
    }

    #[test]
    fn round_trip() {
        let e = sample();
        assert_eq!(Entry::decode(e.encode()).unwrap(), e);
    }

    #[test]
    fn empty_body_and_no_headers_round_trip() {
        let e = Entry {
            headers: vec![],
            body: Bytes::new(),
            origin: String::new(),
            scopes: vec![],
            ..sample()
        };
        assert_eq!(Entry::decode(e.encode()).unwrap(), e);
    }

    #[test]
    fn every_truncation_is_an_error() {
        let raw = sample().encode();
        for len in 0..raw.len() {
            assert!(Entry::decode(raw.slice(..len)).is_err(), "len {len}");
        }
    }

    #[test]
    fn foreign_and_damaged_values_are_errors() {
        assert!(Entry::decode(Bytes::from_static(b"hello world, not ours at all")).is_err());
        let mut raw = sample().encode().to_vec();
        raw[3] = 0; // an older format version
        assert!(Entry::decode(Bytes::from(raw)).is_err());
        let mut raw = sample().encode().to_vec();
        raw.push(0); // trailing garbage
        assert!(Entry::decode(Bytes::from(raw)).is_err());
    }

    #[test]
    fn a_huge_declared_length_does_not_allocate() {
        let mut raw = sample().encode().to_vec();
        let body_len_at = raw.len() - sample().body.len() - 4;
        raw[body_len_at..body_len_at + 4].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(Entry::decode(Bytes::from(raw)).is_err());
        // A header count of 1024 with no header bytes behind it.
        let e = Entry {
            headers: vec![],
            body: Bytes::new(),
            ..sample()
        };
        let mut raw = e.encode().to_vec();
        let count_at = raw.len() - 4 - 2;
        raw.truncate(count_at);
        raw.extend_from_slice(&1024u16.to_be_bytes());
        raw.extend_from_slice(&0u32.to_be_bytes());
        assert!(Entry::decode(Bytes::from(raw)).is_err());
    }
}
