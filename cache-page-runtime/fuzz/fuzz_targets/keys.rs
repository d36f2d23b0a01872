//! The key functions on arbitrary request URIs and `Host` headers, and the key
//! encoding on arbitrary (prefix, groups, key) tuples.
//!
//! - `default_key`, `query_key`, `path_key` and `query_params` never panic, and agree
//!   with each other: the default key is host, path and canonical query; the
//!   canonical query is a valid URI query and a fixed point (canonicalising it again
//!   changes nothing); `query_params` keeps only the names it lists;
//! - `key_preimage` is injective: the preimage parses back, netstring by netstring, to
//!   exactly the tuple it was written from (so two tuples with one preimage are the
//!   same tuple), and for a second tuple (often a near miss of the first: a boundary
//!   moved, two groups joined, a group written into the key) preimages are equal
//!   exactly when the tuples are; `hash_key` is the md5 of the preimage, equal for
//!   equal tuples.
#![no_main]

use arbitrary::Arbitrary;
use cache_page_runtime::{
    hash_key,
    http::{HeaderValue, Request, Uri, request::Parts},
    key_preimage,
    keys::{default_key, path_key, query_key, query_params},
};
use libfuzzer_sys::fuzz_target;
use md5::{Digest, Md5};

#[derive(Debug, Arbitrary)]
struct Input<'a> {
    uri: &'a str,
    host: Option<&'a [u8]>,
    first: Tuple,
    second: Second,
}

#[derive(Clone, Debug, PartialEq, Eq, Arbitrary)]
struct Tuple {
    prefix: String,
    groups: Vec<(String, u64)>,
    key: String,
}

/// How the second tuple is made from the first.
#[derive(Debug, Arbitrary)]
enum Second {
    Same,
    Independent(Tuple),
    /// The last `n` characters of the prefix become the start of the key.
    PrefixIntoKey(usize),
    /// The last `n` characters of the prefix become the start of the first group.
    PrefixIntoGroup(usize),
    /// Groups `i` and `i + 1` become one group named `name_i`, `version_i`, `name_i+1`.
    JoinGroups(usize),
    /// Group `i` is removed and written, as its netstrings, at the start of the key.
    GroupIntoKey(usize),
    /// One field is replaced.
    Prefix(String),
    Key(String),
    Version(usize, u64),
}

fuzz_target!(|input: Input<'_>| {
    key_functions(input.uri, input.host);
    let second = input.second.apply(&input.first);
    encoding(&input.first, &second);
});

fn key_functions(uri: &str, host: Option<&[u8]>) {
    let Ok(uri) = uri.parse::<Uri>() else {
        return;
    };
    let mut request = Request::builder().uri(uri);
    if let Some(host) = host.and_then(|h| HeaderValue::from_bytes(h).ok()) {
        request = request.header(http::header::HOST, host);
    }
    let Ok(request) = request.body(()) else {
        return;
    };
    let parts: Parts = request.into_parts().0;

    let default = default_key(&parts);
    let query = query_key(&parts);
    let path = path_key(&parts);
    let listed = query_params(&["a", "b"])(&parts);

    assert_eq!(path, parts.uri.path());
    assert!(query.is_empty() || query.starts_with('?'), "{query:?}");
    let host = parts
        .uri
        .authority()
        .map(|a| a.as_str())
        .or_else(|| {
            parts
                .headers
                .get(http::header::HOST)
                .and_then(|v| v.to_str().ok())
        })
        .unwrap_or("");
    assert_eq!(default, format!("{host}{path}{query}"));

    // `query_params` is the path and a subset of the canonical query.
    let listed_query = listed
        .strip_prefix(path.as_str())
        .expect("query_params starts with the path");
    assert!(listed_query.is_empty() || listed_query.starts_with('?'));
    for (name, _) in form_urlencoded_pairs(listed_query) {
        assert!(name == "a" || name == "b", "query_params kept {name:?}");
    }

    // The canonical query is a valid query, and canonical: a fixed point.
    if !query.is_empty() {
        let again: Uri = format!("/x{query}")
            .parse()
            .expect("a canonical query is a valid URI query");
        let (again, _) = Request::builder().uri(again).body(()).unwrap().into_parts();
        assert_eq!(
            query_key(&again),
            query,
            "canonical query is not a fixed point"
        );
    }
}

/// The pairs of a `?query` (or of an empty string), decoded.
fn form_urlencoded_pairs(query: &str) -> Vec<(String, String)> {
    let query = query.strip_prefix('?').unwrap_or(query);
    form_urlencoded::parse(query.as_bytes())
        .map(|(n, v)| (n.into_owned(), v.into_owned()))
        .collect()
}

fn encoding(a: &Tuple, b: &Tuple) {
    let a_groups = a.groups();
    let b_groups = b.groups();
    let a_pre = key_preimage(&a.prefix, &a_groups, &a.key);
    let b_pre = key_preimage(&b.prefix, &b_groups, &b.key);

    assert_eq!(parse_preimage(&a_pre), a.fields(), "preimage {a_pre:?}");
    assert_eq!(parse_preimage(&b_pre), b.fields(), "preimage {b_pre:?}");
    assert_eq!(
        a_pre == b_pre,
        a == b,
        "{a:?} and {b:?} give {a_pre:?} and {b_pre:?}"
    );

    let a_hash = hash_key(&a.prefix, &a_groups, &a.key);
    assert_eq!(a_hash, md5_hex(&a_pre));
    if a == b {
        assert_eq!(a_hash, hash_key(&b.prefix, &b_groups, &b.key));
    }
}

impl Tuple {
    fn groups(&self) -> Vec<(&str, u64)> {
        self.groups.iter().map(|(n, v)| (n.as_str(), *v)).collect()
    }

    /// The fields the preimage must hold, in order.
    fn fields(&self) -> Vec<String> {
        let mut out = vec![self.prefix.clone(), self.groups.len().to_string()];
        for (name, version) in &self.groups {
            out.push(name.clone());
            out.push(version.to_string());
        }
        out.push(self.key.clone());
        out
    }
}

/// Reads a preimage back as netstrings (`<length>:<bytes>,`), strictly: a decimal
/// length without leading zeros, exactly that many bytes, a comma, nothing left over.
fn parse_preimage(mut rest: &str) -> Vec<String> {
    let mut fields = Vec::new();
    while !rest.is_empty() {
        let (len, tail) = rest.split_once(':').expect("a netstring has a ':'");
        assert!(
            !len.is_empty() && len.bytes().all(|b| b.is_ascii_digit()),
            "bad length {len:?}"
        );
        assert!(
            len == "0" || !len.starts_with('0'),
            "length {len:?} is padded"
        );
        let len: usize = len.parse().unwrap();
        let field = tail.get(..len).expect("the length is in bounds");
        assert_eq!(
            tail.as_bytes().get(len),
            Some(&b','),
            "no ',' after a field"
        );
        fields.push(field.to_owned());
        rest = &tail[len + 1..];
    }
    fields
}

fn md5_hex(s: &str) -> String {
    Md5::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The last `n` characters of `s` (all of them if it is shorter), removed from it.
fn split_tail(s: &mut String, n: usize) -> String {
    let count = s.chars().count();
    let at = s
        .char_indices()
        .nth(count.saturating_sub(n))
        .map_or(s.len(), |(i, _)| i);
    s.split_off(at)
}

impl Second {
    fn apply(self, a: &Tuple) -> Tuple {
        let mut b = a.clone();
        match self {
            Second::Same => {}
            Second::Independent(t) => b = t,
            Second::PrefixIntoKey(n) => {
                let tail = split_tail(&mut b.prefix, n);
                b.key.insert_str(0, &tail);
            }
            Second::PrefixIntoGroup(n) => {
                let tail = split_tail(&mut b.prefix, n);
                match b.groups.first_mut() {
                    Some((name, _)) => name.insert_str(0, &tail),
                    None => b.groups.push((tail, 0)),
                }
            }
            Second::JoinGroups(i) => {
                if i < b.groups.len().saturating_sub(1) {
                    let (next, version) = b.groups.remove(i + 1);
                    let (name, v) = &mut b.groups[i];
                    name.push_str(&v.to_string());
                    name.push_str(&next);
                    *v = version;
                }
            }
            Second::GroupIntoKey(i) => {
                if i < b.groups.len() {
                    let (name, version) = b.groups.remove(i);
                    let version = version.to_string();
                    b.key.insert_str(
                        0,
                        &format!("{}:{name},{}:{version},", name.len(), version.len()),
                    );
                }
            }
            Second::Prefix(p) => b.prefix = p,
            Second::Key(k) => b.key = k,
            Second::Version(i, v) => {
                if let Some(n) = b.groups.len().checked_sub(1) {
                    b.groups[i.min(n)].1 = v;
                }
            }
        }
        b
    }
}
