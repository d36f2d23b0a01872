//! `store = "name"`: a handler uses the cache installed under that name.

use axum::{Extension, Router, extract::State, routing::get};
use cache_page_runtime::cache_page;
use cache_page_tests::{Hits, RedisServer, fetch, memory_cache};

#[cache_page(timeout = 60, store = "reports")]
async fn report(State(hits): State<Hits>) -> String {
    format!("run {}", hits.bump())
}

#[cache_page(timeout = 60, store = "swapped")]
async fn swapped(State(hits): State<Hits>) -> String {
    format!("run {}", hits.bump())
}

#[cache_page(timeout = 60, store = "never-installed")]
async fn orphan(State(hits): State<Hits>) -> String {
    format!("run {}", hits.bump())
}

fn app(hits: &Hits) -> Router {
    Router::new()
        .route("/report", get(report))
        .route("/swapped", get(swapped))
        .route("/orphan", get(orphan))
        .with_state(hits.clone())
}

#[tokio::test]
async fn handler_uses_the_cache_installed_under_its_name() {
    let server = RedisServer::start();
    let store = server.store("named_store");
    cache_page_runtime::install_named("reports", cache_page_tests::patient_cache(store.clone()));
    // A request-level cache does not override the handler's named one.
    let hits = Hits::new();
    let app = app(&hits).layer(Extension(memory_cache()));

    assert_eq!(fetch(&app, "/report").await.text(), "run 1");
    assert!(fetch(&app, "/report").await.is_hit());
    let pages: Vec<String> = server.cmd(&["KEYS", &store.page_key("*")]).await;
    assert_eq!(pages.len(), 1, "the page is not in the named Redis store");

    let named = cache_page_runtime::named_cache("reports").expect("installed");
    named
        .invalidate_group("no-such-group")
        .await
        .expect("the named cache answers");
}

#[tokio::test]
async fn installing_a_name_again_replaces_its_cache() {
    let hits = Hits::new();
    let app = app(&hits);
    cache_page_runtime::install_named("swapped", memory_cache());
    assert_eq!(fetch(&app, "/swapped").await.text(), "run 1");
    assert!(fetch(&app, "/swapped").await.is_hit());

    cache_page_runtime::install_named("swapped", memory_cache());
    let after = fetch(&app, "/swapped").await;
    assert!(!after.is_hit(), "the replaced cache still served the page");
    assert_eq!(after.text(), "run 2");
}

#[tokio::test]
async fn a_name_never_installed_serves_uncached() {
    let hits = Hits::new();
    let app = app(&hits);
    for n in 1..=3 {
        let reply = fetch(&app, "/orphan").await;
        assert_eq!(reply.status, 200);
        assert_eq!(reply.text(), format!("run {n}"));
    }
}
