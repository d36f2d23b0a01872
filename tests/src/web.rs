//! HTTP helpers: requests through a `Router` (`oneshot`) or over a real socket, and a
//! counter of handler runs.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
};

use axum::{
    Router,
    body::Body,
    http::{HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode},
};
use bytes::Bytes;
use http_body_util::BodyExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tower::ServiceExt;

/// A response, read whole.
#[derive(Debug, Clone)]
pub struct Reply {
    /// The status.
    pub status: StatusCode,
    /// Every header, in order.
    pub headers: HeaderMap,
    /// The body's bytes.
    pub body: Bytes,
}

impl Reply {
    /// The body as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The first value of header `name`, if it is text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Every value of header `name`, in order, as raw bytes.
    pub fn header_all(&self, name: &str) -> Vec<&[u8]> {
        self.headers
            .get_all(name)
            .iter()
            .map(HeaderValue::as_bytes)
            .collect()
    }

    /// The `Cache-Status` header, or `""`.
    pub fn cache_status(&self) -> &str {
        self.header("cache-status").unwrap_or("")
    }

    /// Whether the response was served from the cache: its `Cache-Status` has the
    /// `hit` parameter (RFC 9211).
    pub fn is_hit(&self) -> bool {
        self.cache_status().split(';').any(|p| p.trim() == "hit")
    }

    /// Whether the response was stored by the cache: `Cache-Status` says `stored`.
    pub fn is_stored(&self) -> bool {
        self.cache_status().split(';').any(|p| p.trim() == "stored")
    }
}

/// Sends `req` through `app` and reads the response whole.
pub async fn send(app: &Router, req: Request<Body>) -> Reply {
    let response = app
        .clone()
        .oneshot(req)
        .await
        .expect("a Router never fails");
    let (parts, body) = response.into_parts();
    let body = body
        .collect()
        .await
        .expect("the body is readable")
        .to_bytes();
    Reply {
        status: parts.status,
        headers: parts.headers,
        body,
    }
}

/// `GET uri` through `app`.
pub async fn fetch(app: &Router, uri: &str) -> Reply {
    request(app, Method::GET, uri, &[]).await
}

/// `GET uri` through `app`, with `headers`.
pub async fn fetch_with(app: &Router, uri: &str, headers: &[(&str, &str)]) -> Reply {
    request(app, Method::GET, uri, headers).await
}

/// `method uri` through `app`, with `headers` and an empty body.
pub async fn request(app: &Router, method: Method, uri: &str, headers: &[(&str, &str)]) -> Reply {
    let mut req = Request::builder().method(method).uri(uri);
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    send(app, req.body(Body::empty()).expect("a valid request")).await
}

/// Counts handler runs; cloned into the router's state, shared by the clones.
#[derive(Clone, Debug, Default)]
pub struct Hits(Arc<AtomicUsize>);

impl Hits {
    /// A counter at 0.
    pub fn new() -> Hits {
        Hits::default()
    }

    /// Counts one run and returns the new count.
    pub fn bump(&self) -> usize {
        self.0.fetch_add(1, Ordering::SeqCst) + 1
    }

    /// The number of runs so far.
    pub fn get(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

/// A handler's origin whose runs after the first are held until the test lets them
/// go: "served while a refresh runs" is then shown without timing.
#[derive(Clone, Debug)]
pub struct Gated {
    /// The runs so far.
    pub runs: Hits,
    /// Every run after the first takes a permit; `gate.add_permits(n)` lets n go.
    pub gate: Arc<tokio::sync::Semaphore>,
}

impl Default for Gated {
    fn default() -> Self {
        Gated {
            runs: Hits::new(),
            gate: Arc::new(tokio::sync::Semaphore::new(0)),
        }
    }
}

impl Gated {
    /// No run yet, the gate closed.
    pub fn new() -> Gated {
        Gated::default()
    }

    /// Counts a run and returns its number; every run after the first waits for a
    /// permit.
    pub async fn run(&self) -> usize {
        let n = self.runs.bump();
        if n > 1 {
            self.gate
                .acquire()
                .await
                .expect("the gate is never closed")
                .forget();
        }
        n
    }
}

/// An axum server on a real socket of 127.0.0.1, stopped when dropped.
#[derive(Debug)]
pub struct TestServer {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl TestServer {
    /// Serves `app` on a free port of 127.0.0.1 (`axum::serve`).
    pub async fn start(app: Router) -> TestServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("a bound address");
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("the server runs");
        });
        TestServer { addr, task }
    }

    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `method path` over a new TCP connection, HTTP/1.1, `Connection: close`.
    pub async fn request(&self, method: &str, path: &str, headers: &[(&str, &str)]) -> Reply {
        http1_request(self.addr, method, path, headers).await
    }

    /// `GET path` over a new TCP connection.
    pub async fn fetch(&self, path: &str) -> Reply {
        self.request("GET", path, &[]).await
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A minimal HTTP/1.1 client: one request on a new connection with
/// `Connection: close`, the response read to the end of the stream.
pub async fn http1_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Reply {
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connect to the server");
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream
        .write_all(head.as_bytes())
        .await
        .expect("write the request");
    let mut raw = Vec::new();
    stream
        .read_to_end(&mut raw)
        .await
        .expect("read the response");
    parse_http1_response(&raw, method == "HEAD")
}

/// Parses a whole HTTP/1.1 response (status line, headers, body by `Content-Length`,
/// chunked, or to the end).
pub fn parse_http1_response(raw: &[u8], head_request: bool) -> Reply {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no end of head in {:?}", String::from_utf8_lossy(raw)));
    let head = std::str::from_utf8(&raw[..end]).expect("an ASCII head");
    let rest = &raw[end + 4..];
    let mut lines = head.split("\r\n");
    let status_line = lines.next().expect("a status line");
    let code = status_line.split(' ').nth(1).expect("a status code");
    let status = StatusCode::from_bytes(code.as_bytes()).expect("a valid status code");
    let mut headers = HeaderMap::new();
    for line in lines {
        let (name, value) = line.split_once(':').expect("a header line");
        headers.append(
            HeaderName::from_bytes(name.trim().as_bytes()).expect("a header name"),
            HeaderValue::from_bytes(value.trim().as_bytes()).expect("a header value"),
        );
    }
    let body = if head_request {
        Bytes::new()
    } else if headers
        .get("transfer-encoding")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"chunked"))
    {
        Bytes::from(dechunk(rest))
    } else if let Some(len) = headers.get("content-length") {
        let len: usize = len
            .to_str()
            .ok()
            .and_then(|l| l.parse().ok())
            .expect("a length");
        assert!(rest.len() >= len, "body shorter than its Content-Length");
        Bytes::copy_from_slice(&rest[..len])
    } else {
        Bytes::copy_from_slice(rest)
    };
    Reply {
        status,
        headers,
        body,
    }
}

fn dechunk(mut rest: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let line_end = rest
            .windows(2)
            .position(|w| w == b"\r\n")
            .expect("a chunk size line");
        let size = std::str::from_utf8(&rest[..line_end]).expect("an ASCII chunk size");
        let size = usize::from_str_radix(size.split(';').next().unwrap_or("").trim(), 16)
            .expect("a hex chunk size");
        rest = &rest[line_end + 2..];
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&rest[..size]);
        rest = &rest[size + 2..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_response_with_a_length() {
        let raw = b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\nx-a: 1\r\nx-a: 2\r\n\r\nabc";
        let reply = parse_http1_response(raw, false);
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.body, "abc");
        assert_eq!(reply.header_all("x-a"), [b"1", b"2"]);
    }

    #[test]
    fn parses_a_chunked_response() {
        let raw = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
        assert_eq!(parse_http1_response(raw, false).body, "abcde");
    }

    #[test]
    fn reads_cache_status() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "cache-status",
            HeaderValue::from_static("cache-page; hit; ttl=3"),
        );
        let reply = Reply {
            status: StatusCode::OK,
            headers,
            body: Bytes::new(),
        };
        assert!(reply.is_hit());
        assert!(!reply.is_stored());
    }
}
