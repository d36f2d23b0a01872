//! A stored page: status, end-to-end headers, raw body bytes and creation time, and the
//! binary format it is written in.
//!
//! The format is versioned and every length in it is checked against the bytes that are
//! really there before anything is allocated, so a damaged, truncated or foreign value
//! decodes to an error (a miss), never to a panic or a huge allocation.
//!
//! ```text
//! magic "CPE" | format u8 = 1 | created unix-ms u64 | ttl secs u32 | status u16
//! | header count u16 | (name len u16, name, value len u32, value)* | body len u32 | body
//! ```
//! All integers are big-endian.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use http::{HeaderName, HeaderValue, StatusCode};

use crate::Error;

const MAGIC: &[u8; 3] = b"CPE";
const FORMAT: u8 = 1;
const FIXED_LEN: usize = 3 + 1 + 8 + 4 + 2 + 2;

/// Largest number of headers an entry may hold.
pub const MAX_HEADERS: usize = 1024;

/// A complete response as it is kept in a store.
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
    /// How long the entry lives in the store.
    pub ttl: Duration,
}

impl Entry {
    /// The entry's age at `now`.
    pub fn age_at(&self, now: SystemTime) -> Duration {
        Duration::from_millis(unix_ms(now).saturating_sub(self.created_ms))
    }

    /// Writes the entry in the binary format above.
    pub fn encode(&self) -> Bytes {
        let headers_len: usize = self
            .headers
            .iter()
            .map(|(n, v)| 2 + n.as_str().len() + 4 + v.len())
            .sum();
        let mut out = BytesMut::with_capacity(FIXED_LEN + headers_len + 4 + self.body.len());
        out.put_slice(MAGIC);
        out.put_u8(FORMAT);
        out.put_u64(self.created_ms);
        out.put_u32(u32::try_from(self.ttl.as_secs()).unwrap_or(u32::MAX));
        out.put_u16(self.status.as_u16());
        // Entries are built by `from_response`, which refuses more than MAX_HEADERS.
        out.put_u16(self.headers.len().min(MAX_HEADERS) as u16);
        for (name, value) in self.headers.iter().take(MAX_HEADERS) {
            out.put_u16(name.as_str().len() as u16);
            out.put_slice(name.as_str().as_bytes());
            out.put_u32(value.len() as u32);
            out.put_slice(value.as_bytes());
        }
        out.put_u32(self.body.len() as u32);
        out.put_slice(&self.body);
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
        let created_ms = buf.get_u64();
        let ttl = Duration::from_secs(u64::from(buf.get_u32()));
        let status =
            StatusCode::from_u16(buf.get_u16()).map_err(|_| Error::Corrupt("bad status"))?;
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
        Ok(Entry {
            status,
            headers,
            body,
            created_ms,
            ttl,
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
        }
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
        let mut raw = sample().encode()[..FIXED_LEN].to_vec();
        raw[FIXED_LEN - 2..].copy_from_slice(&1024u16.to_be_bytes());
        assert!(Entry::decode(Bytes::from(raw)).is_err());
    }
}
