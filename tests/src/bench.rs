//! What the benchmarks share, so that they serve and report the same page the same
//! way.

use axum::{
    http::header,
    response::{IntoResponse, Response},
};
use bytes::Bytes;

/// The length of the benchmarks' page.
pub const BODY_LEN: usize = 1024;

/// A body of `len` bytes of HTML list items.
pub fn body_of(len: usize) -> Bytes {
    let unit = b"<li class=\"product\">Widget</li>\n";
    Bytes::from(unit.iter().copied().cycle().take(len).collect::<Vec<u8>>())
}

/// The page every configuration serves: `body` as `text/html`.
pub fn page(body: Bytes) -> Response {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], body).into_response()
}

/// `35100` as `35,100`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}
