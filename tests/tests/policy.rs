//! What is stored and what is not: only GET/HEAD, only 200, never a cookie or a
//! private response; and the caching headers a stored response carries.

use axum::{
    Extension, Router,
    extract::{Path, State},
    http::{Method, StatusCode, header, response::Parts},
    response::{IntoResponse, Response},
    routing::get,
};
use cache_page_runtime::{Cache, cache_page};
use cache_page_tests::{Hits, Reply, both_stores, fetch, fetch_with, request};

#[cache_page(timeout = 60)]
async fn page(State(hits): State<Hits>) -> String {
    format!("run {}", hits.bump())
}

#[cache_page(timeout = 60)]
async fn status(State(hits): State<Hits>, Path(code): Path<u16>) -> Response {
    let n = hits.bump();
    let status = StatusCode::from_u16(code).expect("a valid status");
    (status, format!("status {code} run {n}")).into_response()
}

#[cache_page(timeout = 60)]
async fn fallible(State(hits): State<Hits>, Path(id): Path<u32>) -> Result<String, StatusCode> {
    let n = hits.bump();
    let found = (id == 1).then_some(id).ok_or(StatusCode::NOT_FOUND)?;
    Ok(format!("item {found} run {n}"))
}

/// Responds with the header named by the path, one that forbids storing.
#[cache_page(timeout = 60)]
async fn uncacheable(State(hits): State<Hits>, Path(kind): Path<String>) -> Response {
    let n = hits.bump();
    let body = format!("{kind} run {n}");
    let (name, value) = match kind.as_str() {
        "set-cookie" => (header::SET_COOKIE, "session=abc; HttpOnly"),
        "private" => (header::CACHE_CONTROL, "private, max-age=60"),
        "no-store" => (header::CACHE_CONTROL, "no-store"),
        "no-cache" => (header::CACHE_CONTROL, "no-cache"),
        "vary-star" => (header::VARY, "*"),
        _ => panic!("unknown kind {kind}"),
    };
    ([(name, value)], body).into_response()
}

/// `max-age` of the handler's own, per path.
#[cache_page(timeout = 60)]
async fn max_age(State(hits): State<Hits>, Path(own): Path<String>) -> Response {
    hits.bump();
    match own.parse::<u64>() {
        Ok(secs) => (
            [(header::CACHE_CONTROL, format!("public, max-age={secs}"))],
            "aged",
        )
            .into_response(),
        Err(_) => "plain".into_response(),
    }
}

/// The timeout is the handler's `x-ttl` header: 0 means "do not store".
fn ttl_from_header(response: &Parts) -> u64 {
    response
        .headers
        .get("x-ttl")
        .and_then(|v| v.to_str().ok()?.parse().ok())
        .unwrap_or(60)
}

#[cache_page(timeout = ttl_from_header)]
async fn computed_timeout(State(hits): State<Hits>, Path(ttl): Path<u64>) -> Response {
    let n = hits.bump();
    ([("x-ttl", ttl.to_string())], format!("ttl {ttl} run {n}")).into_response()
}

fn app(cache: &Cache, hits: &Hits) -> Router {
    Router::new()
        .route("/page", get(page).post(page).put(page).delete(page))
        .route("/status/{code}", get(status))
        .route("/fallible/{id}", get(fallible))
        .route("/uncacheable/{kind}", get(uncacheable))
        .route("/max-age/{own}", get(max_age))
        .route("/computed/{ttl}", get(computed_timeout))
        .with_state(hits.clone())
        .layer(Extension(cache.clone()))
}

/// Requests `uri` twice: the handler runs both times, and neither is a hit.
async fn assert_never_stored(app: &Router, hits: &Hits, uri: &str) {
    let before = hits.get();
    let first = fetch(app, uri).await;
    let second = fetch(app, uri).await;
    assert!(
        !first.is_hit() && !second.is_hit(),
        "{uri} was served from the cache"
    );
    assert_eq!(
        hits.get(),
        before + 2,
        "{uri} was stored: the handler did not run twice"
    );
}

async fn non_get_requests_are_not_cached(cache: Cache) {
    let hits = Hits::new();
    let app = app(&cache, &hits);
    for method in [Method::POST, Method::PUT, Method::DELETE] {
        let before = hits.get();
        let first = request(&app, method.clone(), "/page", &[]).await;
        let second = request(&app, method.clone(), "/page", &[]).await;
        assert_eq!(first.status, StatusCode::OK);
        assert!(!second.is_hit(), "{method} was served from the cache");
        assert_eq!(hits.get(), before + 2, "{method} did not run every time");
    }
    // Nor did they fill the cache for GET.
    let miss = fetch(&app, "/page").await;
    assert!(!miss.is_hit(), "a POST/PUT/DELETE filled the cache for GET");
    assert!(fetch(&app, "/page").await.is_hit());
    // And a POST after the GET is cached still runs the handler.
    let before = hits.get();
    let post = request(&app, Method::POST, "/page", &[]).await;
    assert!(!post.is_hit());
    assert_eq!(hits.get(), before + 1);
}

async fn non_200_responses_are_not_cached(cache: Cache) {
    let hits = Hits::new();
    let app = app(&cache, &hits);
    for code in [404, 500, 201, 204, 301, 503] {
        assert_never_stored(&app, &hits, &format!("/status/{code}")).await;
    }
    // A 200 on the same route is.
    fetch(&app, "/status/200").await;
    assert!(fetch(&app, "/status/200").await.is_hit());
}

async fn errors_returned_with_question_mark_are_not_cached(cache: Cache) {
    let hits = Hits::new();
    let app = app(&cache, &hits);
    let missing = fetch(&app, "/fallible/2").await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_never_stored(&app, &hits, "/fallible/2").await;
    assert_eq!(fetch(&app, "/fallible/1").await.text(), "item 1 run 4");
    assert!(fetch(&app, "/fallible/1").await.is_hit());
}

async fn cookies_and_private_responses_are_not_stored(cache: Cache) {
    let hits = Hits::new();
    let app = app(&cache, &hits);
    for kind in ["set-cookie", "private", "no-store", "no-cache", "vary-star"] {
        assert_never_stored(&app, &hits, &format!("/uncacheable/{kind}")).await;
    }
}

fn cache_control_max_age(reply: &Reply) -> u64 {
    let cc = reply
        .header("cache-control")
        .expect("a cached response carries Cache-Control");
    cc.split(',')
        .find_map(|d| d.trim().strip_prefix("max-age="))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no max-age in {cc:?}"))
}

fn assert_expires(reply: &Reply) {
    let expires = reply
        .header("expires")
        .expect("a cached response carries Expires");
    assert!(
        expires.ends_with(" GMT"),
        "Expires is not an HTTP date: {expires:?}"
    );
}

async fn cached_responses_carry_max_age_and_expires(cache: Cache) {
    let hits = Hits::new();
    let app = app(&cache, &hits);
    // (path, the expected max-age): the smaller of the timeout (60) and the handler's own.
    for (uri, expected) in [
        ("/max-age/none", 60),
        ("/max-age/30", 30),
        ("/max-age/99999", 60),
    ] {
        let miss = fetch(&app, uri).await;
        let hit = fetch(&app, uri).await;
        assert!(hit.is_hit(), "{uri} was not cached");
        for reply in [&miss, &hit] {
            assert_eq!(cache_control_max_age(reply), expected, "{uri}");
            assert_expires(reply);
        }
        assert_eq!(
            miss.header("expires"),
            hit.header("expires"),
            "the hit's Expires was not stored"
        );
    }
    let own = fetch(&app, "/max-age/30").await;
    let cc = own.header("cache-control").unwrap_or("");
    assert!(
        cc.contains("public"),
        "the handler's other directives were dropped: {cc:?}"
    );
}

async fn timeout_function_of_zero_stores_nothing(cache: Cache) {
    let hits = Hits::new();
    let app = app(&cache, &hits);
    assert_never_stored(&app, &hits, "/computed/0").await;
    let stored = fetch(&app, "/computed/5").await;
    assert_eq!(cache_control_max_age(&stored), 5);
    assert!(fetch(&app, "/computed/5").await.is_hit());
}

async fn requests_with_authorization_bypass_the_cache(cache: Cache) {
    let hits = Hits::new();
    let app = app(&cache, &hits);
    let alice = [("authorization", "Bearer alice")];
    // Nothing is written for a caller with credentials...
    assert_eq!(fetch_with(&app, "/page", &alice).await.text(), "run 1");
    assert_eq!(fetch_with(&app, "/page", &alice).await.text(), "run 2");
    let anonymous = fetch(&app, "/page").await;
    assert!(
        !anonymous.is_hit(),
        "a page fetched with credentials was stored"
    );
    assert_eq!(anonymous.text(), "run 3");
    // ...and nothing is read: the anonymous page is not served to them.
    assert!(fetch(&app, "/page").await.is_hit());
    let with_credentials = fetch_with(&app, "/page", &alice).await;
    assert!(
        !with_credentials.is_hit(),
        "a shared page was served to a caller with credentials"
    );
    assert_eq!(with_credentials.text(), "run 4");
}

both_stores!(
    requests_with_authorization_bypass_the_cache,
    non_get_requests_are_not_cached,
    non_200_responses_are_not_cached,
    errors_returned_with_question_mark_are_not_cached,
    cookies_and_private_responses_are_not_stored,
    cached_responses_carry_max_age_and_expires,
    timeout_function_of_zero_stores_nothing,
);
