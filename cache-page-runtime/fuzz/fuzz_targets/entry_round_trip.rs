//! A structured entry, built from the fuzzer's bytes with `arbitrary`, must come back
//! equal from `encode` then `decode`: a page, and the same page's times, scopes and
//! origin as a vary index.
#![no_main]

use std::time::Duration;

use arbitrary::{Arbitrary, Result, Unstructured};
use bytes::Bytes;
use cache_page_runtime::{Entry, VaryIndex};
use http::{HeaderName, HeaderValue, StatusCode};
use libfuzzer_sys::fuzz_target;

/// `entry::MAX_HEADERS` (not exported): `encode` keeps at most this many headers.
const MAX_HEADERS: u32 = 1024;

#[derive(Debug, Arbitrary)]
struct Input {
    #[arbitrary(with = status)]
    status: StatusCode,
    #[arbitrary(with = headers)]
    headers: Vec<(HeaderName, HeaderValue)>,
    body: Vec<u8>,
    created_ms: u64,
    ttl_secs: u32,
    grace_secs: u32,
    origin: String,
    #[arbitrary(with = scopes)]
    scopes: Vec<u64>,
    #[arbitrary(with = vary)]
    vary: Option<VaryIndex>,
}

fuzz_target!(|input: Input| {
    let page = Entry {
        status: input.status,
        headers: input.headers,
        body: Bytes::from(input.body),
        created_ms: input.created_ms,
        ttl: Duration::from_secs(input.ttl_secs.into()),
        grace: Duration::from_secs(input.grace_secs.into()),
        origin: input.origin,
        scopes: input.scopes,
        vary: None,
    };
    round_trip(&page);
    if let Some(index) = input.vary {
        // What the request path stores (status 200)...
        round_trip(&Entry::vary_index(index.clone(), &page));
        // ...and the same with the page's own status: the format keeps it.
        round_trip(&Entry {
            headers: Vec::new(),
            body: Bytes::new(),
            vary: Some(index),
            ..page
        });
    }
});

fn round_trip(entry: &Entry) {
    let encoded = entry.encode();
    let decoded = Entry::decode(encoded.clone()).expect("an encoded entry decodes");
    assert_eq!(&decoded, entry);
    assert_eq!(decoded.encode(), encoded, "encoding is not stable");
    // Any strict prefix is an error, never a panic or a shorter entry.
    let cut = encoded.len() / 2;
    assert!(Entry::decode(encoded.slice(..cut)).is_err());
}

fn status(u: &mut Unstructured<'_>) -> Result<StatusCode> {
    let code = u.int_in_range(100..=999)?;
    Ok(StatusCode::from_u16(code).expect("100..=999 is a valid status"))
}

/// A few names the `http` crate knows (stored as a tag, not as bytes), and names
/// spelled from every character a header name may hold, upper case included (the
/// `http` crate lowers it).
fn header_name(u: &mut Unstructured<'_>) -> Result<HeaderName> {
    const KNOWN: &[HeaderName] = &[
        http::header::CONTENT_TYPE,
        http::header::ETAG,
        http::header::VARY,
        http::header::CACHE_CONTROL,
        http::header::ACCEPT_LANGUAGE,
        http::header::COOKIE,
        http::header::LAST_MODIFIED,
    ];
    const ALPHABET: &[u8] =
        b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&'*+-.^_`|~";
    if u.ratio(1, 4)? {
        return Ok(u.choose(KNOWN)?.clone());
    }
    let len = u.int_in_range(1..=40)?;
    let mut name = Vec::with_capacity(len);
    for _ in 0..len {
        name.push(*u.choose(ALPHABET)?);
    }
    Ok(HeaderName::from_bytes(&name).expect("the alphabet is valid in a header name"))
}

/// Arbitrary bytes without those a header value may not hold (controls but tab, DEL).
fn header_value(u: &mut Unstructured<'_>) -> Result<HeaderValue> {
    let mut bytes: Vec<u8> = Arbitrary::arbitrary(u)?;
    bytes.retain(|&b| b == b'\t' || (b >= 0x20 && b != 0x7f));
    Ok(HeaderValue::from_bytes(&bytes).expect("the filtered bytes are a valid header value"))
}

fn headers(u: &mut Unstructured<'_>) -> Result<Vec<(HeaderName, HeaderValue)>> {
    let mut out = Vec::new();
    // `encode` keeps at most MAX_HEADERS; the request path refuses more.
    u.arbitrary_loop(None, Some(MAX_HEADERS), |u| {
        out.push((header_name(u)?, header_value(u)?));
        Ok(std::ops::ControlFlow::Continue(()))
    })?;
    Ok(out)
}

fn scopes(u: &mut Unstructured<'_>) -> Result<Vec<u64>> {
    let n = u.int_in_range(0..=8)?;
    (0..n).map(|_| u.arbitrary()).collect()
}

fn vary(u: &mut Unstructured<'_>) -> Result<Option<VaryIndex>> {
    if !u.arbitrary::<bool>()? {
        return Ok(None);
    }
    let mut names = Vec::new();
    u.arbitrary_loop(None, Some(64), |u| {
        names.push(header_name(u)?);
        Ok(std::ops::ControlFlow::Continue(()))
    })?;
    Ok(Some(VaryIndex {
        names,
        nonce: u.arbitrary()?,
    }))
}
