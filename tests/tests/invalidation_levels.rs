//! Invalidation at every level without scanning (Django ticket #31938): a path with
//! every query string and header variant, one URL whatever its parameter order, every
//! page of a prefix (one key of a custom key function: `invalidation_keys.rs`). On
//! Redis, no `SCAN` or `KEYS` ever runs, and the cost does not grow with the pages.

use axum::{
    Extension, Router,
    extract::State,
    http::{HeaderMap, Request, StatusCode, Uri, header},
    response::{IntoResponse, Response},
    routing::get,
};
use cache_page_runtime::{Cache, PageConfig, cache_page, keys};
use cache_page_tests::{Hits, RedisServer, both_stores, fetch, fetch_with};

/// Varies on `Accept-Language`, so each URL has header variants too.
#[cache_page(timeout = 60)]
async fn varying(State(hits): State<Hits>, uri: Uri, headers: HeaderMap) -> Response {
    let lang = headers
        .get(header::ACCEPT_LANGUAGE)
        .map(|v| v.as_bytes().to_vec());
    let body = format!("{uri} {lang:?} run {}", hits.bump());
    ([(header::VARY, "Accept-Language")], body).into_response()
}

#[cache_page(timeout = 60, key = keys::path_key, prefix = "p")]
async fn prefixed(State(hits): State<Hits>, uri: Uri) -> String {
    format!("{uri} run {}", hits.bump())
}

#[cache_page(timeout = 60, key = keys::path_key, prefix = "pp")]
async fn other_prefix(State(hits): State<Hits>, uri: Uri) -> String {
    format!("{uri} run {}", hits.bump())
}

#[cache_page(timeout = 60, key = keys::path_key)]
async fn unprefixed(State(hits): State<Hits>, uri: Uri) -> String {
    format!("{uri} run {}", hits.bump())
}

#[cache_page(timeout = 60)]
async fn slug(State(hits): State<Hits>, uri: Uri) -> String {
    format!("{uri} run {}", hits.bump())
}

/// Stored once, then failing: a 503 is not stored, so nothing replaces the page.
#[cache_page(timeout = 60)]
async fn fails_after_first(State(hits): State<Hits>) -> Response {
    match hits.bump() {
        1 => "run 1".into_response(),
        run => (StatusCode::SERVICE_UNAVAILABLE, format!("down {run}")).into_response(),
    }
}

fn app(cache: &Cache, hits: &Hits) -> Router {
    Router::new()
        .route("/maybe/{slug}", get(slug))
        .route("/flaky", get(fails_after_first))
        .route("/p", get(varying))
        .route("/q", get(varying))
        .route("/prefixed/{n}", get(prefixed))
        .route("/other-prefix", get(other_prefix))
        .route("/unprefixed", get(unprefixed))
        .with_state(hits.clone())
        .layer(Extension(cache.clone()))
}

/// A request: a URI and its headers.
type Req<'a> = (&'a str, &'a [(&'a str, &'a str)]);

const EN: &[(&str, &str)] = &[("accept-language", "en")];
const FR: &[(&str, &str)] = &[("accept-language", "fr")];

async fn warm(app: &Router, requests: &[Req<'_>]) {
    for (uri, headers) in requests {
        fetch_with(app, uri, headers).await;
        let again = fetch_with(app, uri, headers).await;
        assert!(again.is_hit(), "{uri} {headers:?} was not cached");
    }
}

async fn assert_cached(app: &Router, requests: &[Req<'_>], cached: bool) {
    for (uri, headers) in requests {
        let reply = fetch_with(app, uri, headers).await;
        let state = if cached { "cached" } else { "invalidated" };
        assert_eq!(
            reply.is_hit(),
            cached,
            "{uri} {headers:?} should be {state}"
        );
    }
}

async fn a_path_with_every_query_and_variant(cache: Cache) {
    let app = app(&cache, &Hits::new());
    let path: [Req<'_>; 6] = [
        ("/p", &[]),
        ("/p", EN),
        ("/p", FR),
        ("/p?a=1", &[]),
        ("/p?b=2", EN),
        ("/p?a=1&b=2", FR),
    ];
    let others: [Req<'_>; 3] = [("/q", &[]), ("/q", EN), ("/q?a=1", FR)];
    warm(&app, &path).await;
    warm(&app, &others).await;
    cache.invalidate_path("/p").await.expect("invalidated");
    assert_cached(&app, &others, true).await;
    assert_cached(&app, &path, false).await;
    assert_cached(&app, &path, true).await;
}

async fn one_url_whatever_the_parameter_order(cache: Cache) {
    let app = app(&cache, &Hits::new());
    let url: [Req<'_>; 3] = [("/p?a=1&b=2", &[]), ("/p?a=1&b=2", EN), ("/p?a=1&b=2", FR)];
    let others: [Req<'_>; 4] = [("/p?a=1", &[]), ("/p", &[]), ("/p", EN), ("/p?b=2", &[])];
    warm(&app, &url).await;
    warm(&app, &others).await;
    cache
        .invalidate_url("/p?b=2&a=1")
        .await
        .expect("invalidated");
    assert_cached(&app, &others, true).await;
    assert_cached(&app, &url, false).await;
    // The same page in the other order: stored again by the line above.
    assert_cached(&app, &[("/p?b=2&a=1", EN)], true).await;
}

async fn every_page_of_a_prefix(cache: Cache) {
    let app = app(&cache, &Hits::new());
    let prefixed: [Req<'_>; 3] = [
        ("/prefixed/1", &[]),
        ("/prefixed/2", &[]),
        ("/prefixed/3?x=1", &[]),
    ];
    let others: [Req<'_>; 2] = [("/other-prefix", &[]), ("/unprefixed", &[])];
    warm(&app, &prefixed).await;
    warm(&app, &others).await;
    cache.invalidate_prefix("p").await.expect("invalidated");
    assert_cached(&app, &others, true).await;
    assert_cached(&app, &prefixed, false).await;
    assert_cached(&app, &prefixed, true).await;
}

/// A path is one page, and one path to invalidate, however its letters are encoded:
/// as a browser sends them, in lower-case hex, or as the decoded text a handler's
/// `Path` extractor gives.
async fn a_path_whatever_its_encoding(cache: Cache) {
    let app = app(&cache, &Hits::new());
    let cafe: [Req<'_>; 2] = [("/maybe/caf%C3%A9", &[]), ("/maybe/caf%c3%a9", &[])];
    let abc: [Req<'_>; 2] = [("/maybe/%61bc", &[]), ("/maybe/abc", &[])];
    for pair in [cafe, abc] {
        fetch_with(&app, pair[0].0, pair[0].1).await;
        assert_cached(&app, &pair, true).await;
    }
    for (how, target) in [
        ("decoded path", "/maybe/café"),
        ("lower-case path", "/maybe/caf%c3%a9"),
        ("decoded URL", "/maybe/café?"),
        ("lower-case URL", "http://shop.test/maybe/caf%c3%a9"),
    ] {
        let invalidated = if how.ends_with("path") {
            cache.invalidate_path(target).await
        } else {
            cache.invalidate_url(target).await
        };
        invalidated.unwrap_or_else(|e| panic!("{how}: {e}"));
        let reply = fetch(&app, "/maybe/caf%C3%A9").await;
        assert!(!reply.is_hit(), "invalidated by its {how}, still cached");
        assert_cached(&app, &cafe, true).await;
        assert_cached(&app, &abc, true).await;
    }
    cache
        .invalidate_path("/maybe/abc")
        .await
        .expect("invalidated");
    assert_cached(&app, &abc[..1], false).await;
    assert_cached(&app, &cafe, true).await;
}

/// An invalidated page that nothing replaces is found by every later lookup, at the
/// path version it was stored at: it must never be served again, however often it is
/// found (a store that keeps each thread's own copy of a page found twice copies it).
async fn an_invalidated_page_stays_unserved_while_nothing_replaces_it(cache: Cache) {
    let hits = Hits::new();
    let app = app(&cache, &hits);
    assert_eq!(fetch(&app, "/flaky").await.text(), "run 1");
    for _ in 0..3 {
        assert!(fetch(&app, "/flaky").await.is_hit());
    }
    cache.invalidate_path("/flaky").await.expect("invalidated");
    for run in 2..8 {
        let reply = fetch(&app, "/flaky").await;
        assert_eq!(
            reply.text(),
            format!("down {run}"),
            "the invalidated page came back"
        );
    }
}

both_stores!(
    an_invalidated_page_stays_unserved_while_nothing_replaces_it,
    a_path_whatever_its_encoding,
    a_path_with_every_query_and_variant,
    one_url_whatever_the_parameter_order,
    every_page_of_a_prefix,
);

#[tokio::test]
async fn redis_never_scans_and_invalidation_cost_does_not_grow_with_pages() {
    let name = "redis_never_scans_and_invalidation_cost_does_not_grow_with_pages";
    let Some(server) = RedisServer::start_private(name) else {
        return;
    };
    let cache = server.cache(name);
    let app = app(&cache, &Hits::new());
    // A warm-up invalidation loads the script.
    cache
        .invalidate_path("/warm-up")
        .await
        .expect("invalidated");
    let many: Vec<String> = (0..20).map(|i| format!("/p?i={i}")).collect();
    let mut commands = server
        .commands_during(async || {
            for uri in &many {
                warm(&app, &[(uri.as_str(), &[]), (uri.as_str(), EN)]).await;
            }
            warm(
                &app,
                &[("/q", &[]), ("/prefixed/1", &[]), ("/prefixed/2", &[])],
            )
            .await;
        })
        .await;
    let many_pages = server
        .commands_during(async || {
            cache.invalidate_path("/p").await.expect("invalidated");
        })
        .await;
    let one_page = server
        .commands_during(async || {
            cache.invalidate_path("/q").await.expect("invalidated");
        })
        .await;
    assert_eq!(
        many_pages, one_page,
        "invalidating 40 pages cost more than 1"
    );
    let invalidations = server
        .commands_during(async || {
            cache.invalidate_url("/p?i=1").await.expect("invalidated");
            cache.invalidate_prefix("p").await.expect("invalidated");
            cache.invalidate_group("g").await.expect("invalidated");
            cache.invalidate_tag("t").await.expect("invalidated");
            cache
                .invalidate_key("p", &[], "/prefixed/1")
                .await
                .expect("invalidated");
            let (parts, ()) = Request::get("/prefixed/2")
                .body(())
                .expect("a request")
                .into_parts();
            let config = PageConfig::new(60u64).key(keys::path_key).prefix("p");
            cache
                .invalidate_request(&config, &parts)
                .await
                .expect("invalidated");
            for uri in &many {
                fetch(&app, uri).await;
            }
        })
        .await;
    commands.extend(many_pages);
    commands.extend(invalidations);
    for scan in ["scan", "keys", "sscan", "hscan", "zscan"] {
        assert!(!commands.contains_key(scan), "{scan} ran: {commands:?}");
    }
}
