//! The free functions `cache_page_runtime::invalidate_path` and `invalidate_url` act
//! on the default cache. In a binary of its own: the default is installed once per
//! process.

use axum::{Router, extract::State, http::Uri, routing::get};
use cache_page_runtime::cache_page;
use cache_page_tests::{Hits, RedisServer, fetch, patient_cache};

#[cache_page(timeout = 60)]
async fn page(State(hits): State<Hits>, uri: Uri) -> String {
    format!("{uri} run {}", hits.bump())
}

async fn assert_cached(app: &Router, uris: &[&str], cached: bool) {
    for uri in uris {
        let reply = fetch(app, uri).await;
        let state = if cached { "cached" } else { "invalidated" };
        assert_eq!(reply.is_hit(), cached, "{uri} should be {state}");
    }
}

#[tokio::test]
async fn free_functions_invalidate_paths_and_urls_of_the_default_cache() {
    let server = RedisServer::start();
    cache_page_runtime::install(patient_cache(server.store("invalidation_global")))
        .expect("the first install");
    // No `Extension`: the handlers use the installed default.
    let app = Router::new()
        .route("/p", get(page))
        .route("/q", get(page))
        .with_state(Hits::new());
    let path = ["/p", "/p?a=1", "/p?b=2", "/p?a=1&b=2"];
    let others = ["/q", "/q?a=1"];
    for uri in path.iter().chain(&others) {
        fetch(&app, uri).await;
    }
    assert_cached(&app, &path, true).await;
    assert_cached(&app, &others, true).await;

    cache_page_runtime::invalidate_path("/p")
        .await
        .expect("invalidated");
    assert_cached(&app, &others, true).await;
    assert_cached(&app, &path, false).await;
    assert_cached(&app, &path, true).await;

    cache_page_runtime::invalidate_url("/p?b=2&a=1")
        .await
        .expect("invalidated");
    assert_cached(&app, &["/p", "/p?a=1", "/p?b=2"], true).await;
    assert_cached(&app, &["/p?a=1&b=2"], false).await;
    assert_cached(&app, &["/p?a=1&b=2"], true).await;
    drop(server);
}
