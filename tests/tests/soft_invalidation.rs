//! `invalidate_group_soft`: after it, no page from before is served as fresh, but a
//! handler with a `grace` serves it stale while one background request rebuilds it;
//! a handler without `grace` misses as after `invalidate_group`.
//!
//! Refreshes are held on a semaphore the test opens, so "served while it is rebuilt"
//! is shown without timing.

use std::time::Duration;

use axum::{
    Extension, Router,
    extract::State,
    http::{HeaderMap, StatusCode, header},
    response::IntoResponse,
    routing::get,
};
use cache_page_runtime::{Cache, RedisStore, cache_page};
use cache_page_tests::{
    Gated as Origin, RedisServer, Reply, both_stores, eventually, fetch, fetch_with, patient_cache,
    unique_namespace,
};

#[cache_page(timeout = 3600, group = "catalogue", grace = 60)]
async fn with_grace(State(origin): State<Origin>) -> String {
    format!("run {}", origin.run().await)
}

#[cache_page(timeout = 3600, group = "catalogue")]
async fn without_grace(State(origin): State<Origin>) -> String {
    format!("run {}", origin.runs.bump())
}

/// Serves its first run; every later run fails.
#[cache_page(timeout = 3600, group = "catalogue", grace = 3)]
async fn failing_after_one(State(origin): State<Origin>) -> impl IntoResponse {
    match origin.runs.bump() {
        1 => (StatusCode::OK, "good run 1".to_owned()),
        n => (StatusCode::INTERNAL_SERVER_ERROR, format!("failed run {n}")),
    }
}

/// Varies on `Accept-Language`.
#[cache_page(timeout = 3600, group = "catalogue", grace = 60)]
async fn by_language(State(origin): State<Origin>, headers: HeaderMap) -> impl IntoResponse {
    let lang = headers
        .get(header::ACCEPT_LANGUAGE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("none")
        .to_owned();
    let n = origin.run().await;
    (
        [(header::VARY, "accept-language")],
        format!("{lang} run {n}"),
    )
}

fn app(cache: &Cache, origin: &Origin) -> Router {
    Router::new()
        .route("/lang", get(by_language))
        .route("/with-grace", get(with_grace))
        .route("/without-grace", get(without_grace))
        .route("/failing", get(failing_after_one))
        .with_state(origin.clone())
        .layer(Extension(cache.clone()))
}

const PATIENCE: Duration = Duration::from_secs(10);

fn assert_body(reply: &Reply, body: &str) {
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(reply.text(), body, "{:?}", reply.cache_status());
}

const SUPERSEDED: &str = "cache-page; hit; detail=invalidated; ttl=0";

async fn the_old_page_is_served_stale_while_one_request_rebuilds_it(cache: Cache) {
    let origin = Origin::new();
    let app = app(&cache, &origin);
    assert_body(&fetch(&app, "/with-grace").await, "run 1");
    assert!(
        fetch(&app, "/with-grace")
            .await
            .cache_status()
            .contains("; hit;")
    );

    cache
        .invalidate_group_soft("catalogue")
        .await
        .expect("invalidated");
    // The page from before, marked stale, while one refresh is held at the gate.
    for _ in 0..5 {
        let stale = fetch(&app, "/with-grace").await;
        assert_body(&stale, "run 1");
        assert_eq!(stale.cache_status(), SUPERSEDED);
    }
    eventually(PATIENCE, "one refresh started", async || {
        origin.runs.get() == 2
    })
    .await;
    assert_body(&fetch(&app, "/with-grace").await, "run 1");
    assert_eq!(origin.runs.get(), 2, "more than one refresh ran");

    // Once the refresh stored its page, that page is a fresh hit.
    origin.gate.add_permits(1);
    eventually(PATIENCE, "the rebuilt page is served", async || {
        let reply = fetch(&app, "/with-grace").await;
        assert_eq!(reply.status, StatusCode::OK);
        reply.text() == "run 2"
    })
    .await;
    let fresh = fetch(&app, "/with-grace").await;
    assert_body(&fresh, "run 2");
    assert_eq!(fresh.cache_status(), "cache-page; hit; ttl=3600");
    assert_eq!(origin.runs.get(), 2);
}

async fn a_handler_without_grace_misses(cache: Cache) {
    let origin = Origin::new();
    let app = app(&cache, &origin);
    assert_body(&fetch(&app, "/without-grace").await, "run 1");
    cache
        .invalidate_group_soft("catalogue")
        .await
        .expect("invalidated");
    let reply = fetch(&app, "/without-grace").await;
    assert_body(&reply, "run 2");
    assert_eq!(
        reply.cache_status(),
        "cache-page; fwd=uri-miss; stored; ttl=3600"
    );
}

/// Stores `/with-grace`, invalidates its group softly, then runs `hard`: the next
/// request must miss and render the page again.
async fn nothing_old_is_served_after(cache: Cache, hard: impl AsyncFn(&Cache)) {
    let origin = Origin::new();
    origin.gate.add_permits(10);
    let app = app(&cache, &origin);
    assert_body(&fetch(&app, "/with-grace").await, "run 1");
    cache
        .invalidate_group_soft("catalogue")
        .await
        .expect("invalidated");
    hard(&cache).await;
    let reply = fetch(&app, "/with-grace").await;
    assert_body(&reply, "run 2");
    assert!(
        reply.cache_status().contains("fwd=uri-miss"),
        "{:?}",
        reply.cache_status()
    );
}

async fn a_hard_invalidation_after_a_soft_one_leaves_nothing_to_serve(cache: Cache) {
    nothing_old_is_served_after(cache, async |cache| {
        cache
            .invalidate_group("catalogue")
            .await
            .expect("invalidated");
    })
    .await;
}

/// A page that varies on a request header: each variant from before is served to the
/// requests with its header values, stale, while the page is rebuilt.
async fn the_old_variants_are_served_to_their_requests(cache: Cache) {
    let origin = Origin::new();
    let app = app(&cache, &origin);
    let (en, fr) = ([("accept-language", "en")], [("accept-language", "fr")]);
    assert_body(&fetch_with(&app, "/lang", &en).await, "en run 1");
    origin.gate.add_permits(1);
    assert_body(&fetch_with(&app, "/lang", &fr).await, "fr run 2");
    assert!(fetch_with(&app, "/lang", &fr).await.is_hit());

    cache
        .invalidate_group_soft("catalogue")
        .await
        .expect("invalidated");
    for _ in 0..3 {
        let stale_en = fetch_with(&app, "/lang", &en).await;
        assert_body(&stale_en, "en run 1");
        assert_eq!(stale_en.cache_status(), SUPERSEDED);
        let stale_fr = fetch_with(&app, "/lang", &fr).await;
        assert_body(&stale_fr, "fr run 2");
        assert_eq!(stale_fr.cache_status(), SUPERSEDED);
    }
}

/// A page whose path was invalidated after the soft invalidation of its group is not
/// served stale: the hard invalidation of its path wins.
async fn a_path_invalidation_after_a_soft_one_wins(cache: Cache) {
    nothing_old_is_served_after(cache, async |cache| {
        cache
            .invalidate_path("/with-grace")
            .await
            .expect("invalidated");
    })
    .await;
}

/// The refresh fails, so the old page is the only one; it is served for the handler's
/// grace (3 s) after the invalidation, and not after.
async fn the_old_page_is_served_within_grace_only(cache: Cache) {
    let origin = Origin::new();
    let app = app(&cache, &origin);
    assert_body(&fetch(&app, "/failing").await, "good run 1");
    cache
        .invalidate_group_soft("catalogue")
        .await
        .expect("invalidated");
    let stale = fetch(&app, "/failing").await;
    assert_body(&stale, "good run 1");
    assert_eq!(stale.cache_status(), SUPERSEDED);
    eventually(
        PATIENCE,
        "the grace after the invalidation ran out",
        async || {
            let reply = fetch(&app, "/failing").await;
            match reply.status {
                StatusCode::OK => {
                    assert_body(&reply, "good run 1");
                    false
                }
                status => {
                    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
                    true
                }
            }
        },
    )
    .await;
}

both_stores!(
    the_old_page_is_served_stale_while_one_request_rebuilds_it,
    a_handler_without_grace_misses,
    a_hard_invalidation_after_a_soft_one_leaves_nothing_to_serve,
    a_path_invalidation_after_a_soft_one_wins,
    the_old_variants_are_served_to_their_requests,
    the_old_page_is_served_within_grace_only,
);

/// Two instances on one Redis: the invalidation made through one is soft for the
/// other too, and the page the other rebuilds is the one both then serve. (Each
/// instance rebuilds a page at most once at a time; this test asks only B until its
/// rebuild is stored.)
#[tokio::test]
async fn a_soft_invalidation_reaches_every_instance() {
    let server = RedisServer::start();
    let namespace = unique_namespace("soft");
    let instance = || {
        patient_cache(
            RedisStore::builder(server.url())
                .namespace(&namespace)
                .build()
                .expect("a valid URL"),
        )
    };
    let (a, b) = (instance(), instance());
    let origin = Origin::new();
    let (app_a, app_b) = (app(&a, &origin), app(&b, &origin));
    assert_body(&fetch(&app_a, "/with-grace").await, "run 1");
    assert!(
        fetch(&app_b, "/with-grace")
            .await
            .cache_status()
            .contains("; hit;")
    );

    a.invalidate_group_soft("catalogue")
        .await
        .expect("invalidated");
    let stale = fetch(&app_b, "/with-grace").await;
    assert_body(&stale, "run 1");
    assert_eq!(stale.cache_status(), SUPERSEDED);

    origin.gate.add_permits(1);
    eventually(PATIENCE, "B serves the page it rebuilt", async || {
        fetch(&app_b, "/with-grace").await.text() == "run 2"
    })
    .await;
    let from_a = fetch(&app_a, "/with-grace").await;
    assert_body(&from_a, "run 2");
    assert_eq!(from_a.cache_status(), "cache-page; hit; ttl=3600");
    assert_eq!(origin.runs.get(), 2);
    drop(server);
}
