//! A page lives for its timeout, then the handler runs again.

use std::time::Duration;

use axum::{Extension, Router, extract::State, routing::get};
use cache_page_runtime::{Cache, cache_page};
use cache_page_tests::{Hits, both_stores, eventually, fetch};

#[cache_page(timeout = 1)]
async fn short_lived(State(hits): State<Hits>) -> String {
    format!("run {}", hits.bump())
}

async fn page_expires_after_its_timeout(cache: Cache) {
    let hits = Hits::new();
    let app = Router::new()
        .route("/short", get(short_lived))
        .with_state(hits.clone())
        .layer(Extension(cache));

    let first = fetch(&app, "/short").await;
    assert_eq!(first.text(), "run 1");
    eventually(
        Duration::from_secs(5),
        "the page expired and the handler ran again",
        async || {
            let reply = fetch(&app, "/short").await;
            !reply.is_hit() && reply.text() != "run 1"
        },
    )
    .await;
    assert!(hits.get() >= 2);
}

both_stores!(page_expires_after_its_timeout);
