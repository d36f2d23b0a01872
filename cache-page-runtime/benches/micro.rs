//! Micro-benchmarks of the CPU work on the request path: building a key, hashing it,
//! encoding and decoding an entry, a `MemoryStore` lookup, and a whole in-process hit
//! through an axum `Router` next to the bare handler.
//!
//! `cargo bench -p cache-page-runtime` (about a minute). The HTTP load benchmark, with
//! Redis and the ratios of the targets, is `cargo bench -p cache-page-tests --bench load`
//! (see BENCHMARKS.md).

use std::{hint::black_box, sync::LazyLock, time::Duration};

use axum::{Extension, Router, body::Body, routing::get};
use bytes::Bytes;
use cache_page_runtime::{
    __private, Cache, Entry, MemoryStore, PageConfig, PageKey, Store, Version, hash_key, keys,
};
use criterion::{Criterion, criterion_group, criterion_main};
use futures_util::FutureExt as _;
use http::{HeaderName, HeaderValue, Request, StatusCode, header, request::Parts};
use tower::ServiceExt as _;

/// A request as a server sees it: a path, four query parameters, and a `Host` header.
fn request_parts() -> Parts {
    Request::get("/products/list?page=3&sort=price&utm_source=newsletter&lang=en")
        .header(header::HOST, "shop.example.com")
        .header(header::ACCEPT, "text/html")
        .header(header::USER_AGENT, "bench/1.0")
        .body(())
        .expect("a valid request")
        .into_parts()
        .0
}

/// 1 KiB of HTML-ish bytes.
fn body(len: usize) -> Bytes {
    let unit = b"<li class=\"product\">Widget</li>\n";
    Bytes::from(unit.iter().copied().cycle().take(len).collect::<Vec<u8>>())
}

/// A stored page as the request path builds it: 1 KiB body, 8 headers.
fn entry() -> Entry {
    let headers = [
        ("content-type", "text/html; charset=utf-8"),
        ("content-length", "1024"),
        ("cache-control", "max-age=3600"),
        ("expires", "Thu, 01 Jan 2026 00:00:00 GMT"),
        ("etag", "\"0123456789abcdef0123456789abcdef\""),
        ("last-modified", "Wed, 31 Dec 2025 23:00:00 GMT"),
        ("x-request-id", "3f2c1d4e-5a6b-7c8d-9e0f-1a2b3c4d5e6f"),
        ("content-language", "en"),
    ];
    Entry {
        status: StatusCode::OK,
        headers: headers
            .iter()
            .map(|(n, v)| (HeaderName::from_static(n), HeaderValue::from_static(v)))
            .collect(),
        body: body(1024),
        created_ms: 1_767_225_600_000,
        ttl: Duration::from_secs(3600),
        grace: Duration::ZERO,
        origin: "/products/list?lang=en&page=3&sort=price&utm_source=newsletter".to_owned(),
        scopes: vec![1_767_225_600_000_001, 1_767_225_600_000_002],
        vary: None,
    }
}

fn key_building(c: &mut Criterion) {
    let parts = request_parts();
    c.bench_function("key/default_key (host + path + 4 query params)", |b| {
        b.iter(|| keys::default_key(black_box(&parts)));
    });
    let key = keys::default_key(&parts);
    let groups = [
        ("views", 1_767_225_600_000_001u64),
        ("tenant-42", 1_767_225_600_000_002u64),
    ];
    c.bench_function("key/hash_key (2 groups)", |b| {
        b.iter(|| hash_key(black_box(""), black_box(&groups), black_box(&key)));
    });
}

fn entry_format(c: &mut Criterion) {
    let e = entry();
    c.bench_function("entry/encode (1 KiB body, 8 headers)", |b| {
        b.iter(|| black_box(&e).encode());
    });
    let raw = e.encode();
    c.bench_function("entry/decode (1 KiB body, 8 headers)", |b| {
        b.iter(|| Entry::decode(black_box(raw.clone())).expect("decodes"));
    });
}

fn memory_lookup(c: &mut Criterion) {
    let store = MemoryStore::new();
    let parts = request_parts();
    let key = keys::default_key(&parts);
    let groups = vec!["views".to_owned()];
    let scopes = [
        Version::Path("/products/list"),
        Version::Url("/products/list?lang=en&page=3&sort=price&utm_source=newsletter"),
    ];
    let page = PageKey {
        prefix: "",
        groups: &groups,
        key: &key,
        caller: None,
        scopes: &scopes,
    };
    let miss = store
        .lookup(page)
        .now_or_never()
        .expect("ready")
        .expect("looked up");
    // Stored now: a MemoryStore does not return an entry past its timeout.
    let created_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_millis() as u64;
    let stored = Entry {
        created_ms,
        ..entry()
    };
    store
        .insert(&miss.hash, std::sync::Arc::new(stored), &[])
        .now_or_never()
        .expect("ready")
        .expect("stored");
    c.bench_function("memory_store/lookup hit (1 group, 2 scopes)", |b| {
        b.iter(|| {
            let found = store
                .lookup(black_box(page))
                .now_or_never()
                .expect("ready")
                .expect("looked up");
            assert!(found.entry.is_some());
            found
        });
    });
}

static PAGE: LazyLock<Bytes> = LazyLock::new(|| body(1024));

async fn bare() -> ([(HeaderName, &'static str); 1], Bytes) {
    (
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        PAGE.clone(),
    )
}

/// What `#[cache_page(timeout = 3600, group = "bench")]` on `bare` expands to.
async fn cached(
    __private::WithCache((), request): __private::WithCache<()>,
) -> __private::Response {
    static CONFIG: LazyLock<PageConfig> = LazyLock::new(|| PageConfig::new(3600u64).group("bench"));
    __private::serve(&CONFIG, request, async move { bare().await }).await
}

fn router_hit(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let get_page = |app: &Router| {
        let request = Request::get("/page")
            .header(header::HOST, "127.0.0.1:8080")
            .body(Body::empty())
            .expect("a valid request");
        let app = app.clone();
        rt.block_on(async move {
            let response = app.oneshot(request).await.expect("infallible");
            assert_eq!(response.status(), StatusCode::OK);
            response
        })
    };
    let bare_app = Router::new().route("/page", get(bare));
    let cached_app = Router::new()
        .route("/page", get(cached))
        .layer(Extension(Cache::new(MemoryStore::new())));
    get_page(&cached_app); // the miss that stores the page
    c.bench_function("router/bare handler (1 KiB)", |b| {
        b.iter(|| get_page(&bare_app));
    });
    c.bench_function("router/cache-page hit, MemoryStore (1 KiB)", |b| {
        b.iter(|| get_page(&cached_app));
    });
}

criterion_group! {
    name = micro;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = key_building, entry_format, memory_lookup, router_hit
}
criterion_main!(micro);
