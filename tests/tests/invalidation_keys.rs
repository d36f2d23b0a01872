//! Deleting one page of a custom key function: `Cache::invalidate_key(prefix,
//! groups, key)` and `Cache::invalidate_request(&config, &parts)` with a request the
//! caller builds. The page goes with every header variant; other keys stay.

use axum::{
    Extension, Router,
    extract::State,
    http::{HeaderMap, Request, header, request::Parts},
    response::{IntoResponse, Response},
    routing::get,
};
use cache_page_runtime::{Cache, PageConfig, cache_page};
use cache_page_tests::{Hits, both_stores, fetch_with};

fn by_user(parts: &Parts) -> String {
    let user = parts.headers.get("x-user").and_then(|v| v.to_str().ok());
    format!("user:{}", user.unwrap_or("anonymous"))
}

/// The attribute's options below, as a value.
fn user_config() -> PageConfig {
    PageConfig::new(60u64).key(by_user).prefix("k").group("kg")
}

/// One page per user, whatever the URL; it varies on `Accept-Language`.
#[cache_page(timeout = 60, key = by_user, prefix = "k", group = "kg")]
async fn me(State(hits): State<Hits>, headers: HeaderMap) -> Response {
    let lang = headers.get(header::ACCEPT_LANGUAGE);
    let body = format!("{:?} {lang:?} run {}", headers.get("x-user"), hits.bump());
    ([(header::VARY, "Accept-Language")], body).into_response()
}

fn app(cache: &Cache, hits: &Hits) -> Router {
    Router::new()
        .route("/me", get(me))
        .with_state(hits.clone())
        .layer(Extension(cache.clone()))
}

/// A request: a URI and its headers.
type Req<'a> = (&'a str, &'a [(&'a str, &'a str)]);

const ALICE: Req<'_> = ("/me", &[("x-user", "alice")]);
const ALICE_FR: Req<'_> = ("/me", &[("x-user", "alice"), ("accept-language", "fr")]);
const BOB: Req<'_> = ("/me?page=3", &[("x-user", "bob")]);
const BOB_FR: Req<'_> = ("/me", &[("x-user", "bob"), ("accept-language", "fr")]);

/// Stores each request's page and returns its body, checking the next is a hit.
async fn warm(app: &Router, requests: &[Req<'_>]) -> Vec<String> {
    let mut bodies = Vec::new();
    for (uri, headers) in requests {
        bodies.push(fetch_with(app, uri, headers).await.text());
        let again = fetch_with(app, uri, headers).await;
        assert!(again.is_hit(), "{uri} {headers:?} was not cached");
    }
    bodies
}

async fn assert_kept(app: &Router, requests: &[Req<'_>], bodies: &[String]) {
    for ((uri, headers), body) in requests.iter().zip(bodies) {
        let reply = fetch_with(app, uri, headers).await;
        assert!(reply.is_hit(), "{uri} {headers:?} lost its page");
        assert_eq!(&reply.text(), body);
    }
}

/// After a page was deleted, the next request runs the handler (a new body, stored
/// again), and the one after is a hit on the new page.
async fn assert_deleted(app: &Router, requests: &[Req<'_>], bodies: &[String]) {
    for ((uri, headers), old) in requests.iter().zip(bodies) {
        let reply = fetch_with(app, uri, headers).await;
        assert!(
            reply.is_stored() && !reply.cache_status().contains("collapsed"),
            "{uri} {headers:?}: the deleted page was served ({:?}, {})",
            reply.cache_status(),
            reply.text()
        );
        assert_ne!(
            &reply.text(),
            old,
            "{uri} {headers:?}: the deleted page was served"
        );
        let again = fetch_with(app, uri, headers).await;
        assert!(
            again.is_hit(),
            "{uri} {headers:?}: {:?}",
            again.cache_status()
        );
        assert_eq!(again.body, reply.body);
    }
}

async fn one_key_of_a_custom_key_function(cache: Cache) {
    let app = app(&cache, &Hits::new());
    // The last page stored for alice (the one without a language) is the first asked
    // for after the deletion: the process still remembers it landed, and must not
    // hand out that copy of a deleted page.
    let alice_fr = warm(&app, &[ALICE_FR]).await;
    let alice = warm(&app, &[ALICE]).await;
    let bob = warm(&app, &[BOB, BOB_FR]).await;
    let deleted = cache.invalidate_key("k", &["kg"], "user:alice").await;
    assert!(deleted.expect("invalidated"), "no page for alice's key");
    let again = cache.invalidate_key("k", &["kg"], "user:alice").await;
    assert!(!again.expect("invalidated"), "deleted twice");
    let wrong_prefix = cache.invalidate_key("", &["kg"], "user:bob").await;
    assert!(!wrong_prefix.expect("invalidated"));
    let wrong_group = cache.invalidate_key("k", &[], "user:bob").await;
    assert!(!wrong_group.expect("invalidated"));
    assert_kept(&app, &[BOB, BOB_FR], &bob).await;
    assert_deleted(&app, &[ALICE], &alice).await;
    assert_deleted(&app, &[ALICE_FR], &alice_fr).await;
}

async fn a_request_built_by_the_caller(cache: Cache) {
    let app = app(&cache, &Hits::new());
    let alice = warm(&app, &[ALICE, ALICE_FR]).await;
    let bob_fr = warm(&app, &[BOB_FR]).await;
    let bob = warm(&app, &[BOB]).await;
    // Any URL and headers: the key function only reads `x-user`.
    let (parts, ()) = Request::get("/anywhere?else=1")
        .header("x-user", "bob")
        .body(())
        .expect("a request")
        .into_parts();
    let deleted = cache.invalidate_request(&user_config(), &parts).await;
    assert!(deleted.expect("invalidated"), "no page for bob's request");
    assert_kept(&app, &[ALICE, ALICE_FR], &alice).await;
    assert_deleted(&app, &[BOB], &bob).await;
    assert_deleted(&app, &[BOB_FR], &bob_fr).await;
}

both_stores!(
    one_key_of_a_custom_key_function,
    a_request_built_by_the_caller
);
