//! A multi-tenant catalogue: cached list and detail pages, and an admin endpoint that
//! edits an item and invalidates exactly the pages that showed it. The app itself is
//! `examples/src/catalogue.rs`; this file picks the store and serves it.
//!
//! ```sh
//! cargo run -p examples --example catalogue                                   # in-process store
//! REDIS_URL=redis://127.0.0.1:6379 cargo run -p examples --example catalogue  # Redis
//! ```
//!
//! Then (`cache-status` says `hit` when a page comes from the cache; `rendered_at`
//! and `render` only change when the handler runs):
//!
//! ```sh
//! curl -i 'http://127.0.0.1:3002/t/acme/items?page=1'     # twice: stored, then hit
//! curl -i  http://127.0.0.1:3002/t/acme/items/7           # twice: stored, then hit
//! curl -i 'http://127.0.0.1:3002/t/globex/items?page=1'   # the other tenant: its own pages
//! curl -i -X PUT http://127.0.0.1:3002/t/acme/admin/items/7 \
//!      -H 'content-type: application/json' -d '{"name":"Blue lamp","price":1999}'
//! curl -i 'http://127.0.0.1:3002/t/acme/items?page=1'     # rendered again: the new name
//! ```
//!
//! After the edit, `/t/acme/items/7` and every list page of `acme` are rendered again;
//! `/t/acme/items/8` and every page of `globex` are still hits.
//!
//! On Redis, `redis-cli --scan --pattern 'catalogue:*'` lists the pages
//! (`catalogue:page:…`), the group versions (`catalogue:group:tenant:acme:lists`…),
//! the path versions and the tags. Set `PORT` to serve on another port than 3002.

use cache_page_runtime::{Cache, MemoryStore, RedisStore};
use examples::catalogue::{self, AppState};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    examples::init_logging();

    let store = match std::env::var("REDIS_URL") {
        Ok(url) => {
            let store = RedisStore::builder(url.as_str())
                .namespace("catalogue")
                .build()?;
            cache_page_runtime::install(Cache::new(store))?;
            format!("Redis at {url} (keys under `catalogue:`)")
        }
        Err(_) => {
            cache_page_runtime::install(Cache::new(MemoryStore::new()))?;
            "the in-process store (set REDIS_URL to use Redis)".to_owned()
        }
    };

    let app = catalogue::app(AppState::seeded());
    let (listener, addr) = examples::listen(3002).await?;
    let base = format!("http://{addr}");
    println!("cache-page catalogue on {base}/ with {store}");
    println!("tenants: {}", catalogue::TENANTS.join(", "));
    println!("try:");
    println!("  curl -i '{base}/t/acme/items?page=1'        twice: stored, then a hit");
    println!("  curl -i {base}/t/acme/items/7               twice: stored, then a hit");
    println!("  curl -i '{base}/t/globex/items?page=1'      the other tenant: its own pages");
    println!(
        "  curl -i -X PUT {base}/t/acme/admin/items/7 -H 'content-type: application/json' \
         -d '{{\"name\":\"Blue lamp\",\"price\":1999}}'"
    );
    println!("  curl -i '{base}/t/acme/items?page=1'        rendered again, with the new name");
    println!("after the edit, acme's item 8 and every globex page are still hits");
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
