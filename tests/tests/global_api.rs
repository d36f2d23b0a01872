//! The process-wide API: `install` once, handlers use the installed cache, and
//! `cache_page_runtime::invalidate_group` reaches it. In a binary of its own, since a
//! default cache is installed once per process.

use axum::{Extension, Router, extract::State, routing::get};
use cache_page_runtime::{Cache, Error, cache_page};
use cache_page_tests::{Hits, RedisServer, fetch, memory_cache, patient_cache};

#[cache_page(timeout = 60, group = "global")]
async fn page(State(hits): State<Hits>) -> String {
    format!("run {}", hits.bump())
}

#[tokio::test]
async fn installed_cache_serves_handlers_and_global_invalidation_reaches_it() {
    let server = RedisServer::start();
    let store = server.store("global_api");
    cache_page_runtime::install(patient_cache(store.clone())).expect("the first install");
    assert!(
        matches!(
            cache_page_runtime::install(Cache::memory()),
            Err(Error::AlreadyInstalled)
        ),
        "a second install must fail"
    );

    // No Extension: the handler uses the installed default.
    let hits = Hits::new();
    let app = Router::new()
        .route("/page", get(page))
        .with_state(hits.clone());
    assert_eq!(fetch(&app, "/page").await.text(), "run 1");
    assert!(fetch(&app, "/page").await.is_hit());
    let pages: Vec<String> = server.cmd(&["KEYS", &store.page_key("*")]).await;
    assert!(
        !pages.is_empty(),
        "the page is not in the installed Redis store"
    );

    cache_page_runtime::invalidate_group("global")
        .await
        .expect("invalidated");
    let after = fetch(&app, "/page").await;
    assert!(
        !after.is_hit(),
        "the global invalidation missed the installed cache"
    );
    assert_eq!(after.text(), "run 2");
    assert!(fetch(&app, "/page").await.is_hit());

    // A request carrying a Cache uses it instead of the default.
    let own = Router::new()
        .route("/page", get(page))
        .with_state(hits.clone())
        .layer(Extension(memory_cache()));
    let from_own = fetch(&own, "/page").await;
    assert!(
        !from_own.is_hit(),
        "a request with its own cache was served from the default"
    );
    assert_eq!(from_own.text(), "run 3");
    assert!(fetch(&own, "/page").await.is_hit());
    let from_default = fetch(&app, "/page").await;
    assert_eq!(
        from_default.text(),
        "run 2",
        "the request's own cache wrote to the default"
    );
}
