//! The catalogue example driven over real HTTP (`axum::serve` on 127.0.0.1 and an
//! HTTP/1.1 client), on the in-process store and on a private Redis: every test runs
//! twice, `<test>::memory` and `<test>::redis` (`both_stores!`).
//!
//! Each test gives its own cache to the router (`.layer(Extension(cache))`), so tests
//! never share pages, and the admin routes invalidate in that same cache. A store
//! write is awaited before a response is sent and an invalidation before the admin
//! answers, so every assertion holds on the very next request: no sleeps, no polling.

use std::net::SocketAddr;

use axum::Extension;
use cache_page_runtime::Cache;
use cache_page_tests::{Reply, TestServer, both_stores, parse_http1_response};
use examples::catalogue::{self, AppState, DetailPage, Item, ListPage};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The catalogue, seeded, on a free port, with `cache`.
async fn serve(cache: &Cache) -> (TestServer, AppState) {
    let state = AppState::seeded();
    let app = catalogue::app(state.clone()).layer(Extension(cache.clone()));
    (TestServer::start(app).await, state)
}

/// `GET path`, expecting a `200`.
async fn get_ok(server: &TestServer, path: &str) -> Reply {
    let reply = server.fetch(path).await;
    assert_eq!(reply.status, 200, "GET {path}: {}", reply.text());
    reply
}

/// `GET path` twice: the first is rendered and stored, the second is a hit with the
/// same body. Returns the body.
async fn warm(server: &TestServer, path: &str) -> String {
    let first = get_ok(server, path).await;
    assert!(
        first.is_stored() && !first.is_hit(),
        "GET {path} was not stored: {:?}",
        first.cache_status()
    );
    let second = get_ok(server, path).await;
    assert!(
        second.is_hit(),
        "GET {path} was not a hit: {:?}",
        second.cache_status()
    );
    assert_eq!(
        second.text(),
        first.text(),
        "GET {path}: a hit serves the stored page"
    );
    first.text()
}

/// `GET path` is a hit and serves `body`.
async fn assert_hit(server: &TestServer, path: &str, body: &str) {
    let reply = get_ok(server, path).await;
    assert!(
        reply.is_hit(),
        "GET {path} lost its page: {:?}",
        reply.cache_status()
    );
    assert_eq!(reply.text(), body, "GET {path} served another page");
}

/// `GET path` is rendered again (not a hit) and stored. Returns the body.
async fn assert_rendered(server: &TestServer, path: &str) -> String {
    let reply = get_ok(server, path).await;
    assert!(
        !reply.is_hit() && reply.is_stored(),
        "GET {path} was served from the cache: {:?}",
        reply.cache_status()
    );
    reply.text()
}

fn list(body: &str) -> ListPage {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("a list page ({e}): {body}"))
}

fn detail(body: &str) -> DetailPage {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("a detail page ({e}): {body}"))
}

fn ids(page: &ListPage) -> Vec<u32> {
    page.items.iter().map(|i| i.id).collect()
}

/// `method path` with a JSON body, over a new connection.
async fn send_json(addr: SocketAddr, method: &str, path: &str, body: &str) -> Reply {
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connect to the server");
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream
        .write_all(request.as_bytes())
        .await
        .expect("write the request");
    let mut raw = Vec::new();
    stream
        .read_to_end(&mut raw)
        .await
        .expect("read the response");
    parse_http1_response(&raw, false)
}

/// `PUT /t/{tenant}/admin/items/{id}` with `body`.
async fn edit(server: &TestServer, tenant: &str, id: u32, body: &str) -> Reply {
    send_json(
        server.addr(),
        "PUT",
        &format!("/t/{tenant}/admin/items/{id}"),
        body,
    )
    .await
}

async fn list_page_is_stored_then_hit(cache: Cache) {
    let (server, state) = serve(&cache).await;
    let body = warm(&server, "/t/acme/items?page=1").await;
    let page = list(&body);
    assert_eq!(
        (page.tenant.as_str(), page.page, page.per_page),
        ("acme", 1, 10)
    );
    assert_eq!(page.total, catalogue::ITEMS_PER_TENANT);
    assert_eq!(ids(&page), (1..=10).collect::<Vec<_>>());
    assert_eq!(state.renders(), 1, "the hit rendered nothing");
    // HEAD is answered from the page GET stored.
    let head = server.request("HEAD", "/t/acme/items?page=1", &[]).await;
    assert!(head.is_hit(), "{:?}", head.cache_status());
    assert_eq!(state.renders(), 1);
}

async fn detail_page_is_stored_then_hit(cache: Cache) {
    let (server, state) = serve(&cache).await;
    let page = detail(&warm(&server, "/t/acme/items/7").await);
    assert_eq!((page.item.tenant.as_str(), page.item.id), ("acme", 7));
    assert_eq!(state.renders(), 1);
    // A missing item is a 404, which is never stored.
    for _ in 0..2 {
        let missing = server.fetch("/t/acme/items/999").await;
        assert_eq!(missing.status, 404);
        assert!(
            !missing.is_hit() && !missing.is_stored(),
            "{:?}",
            missing.cache_status()
        );
    }
}

async fn tenants_never_share_a_page(cache: Cache) {
    let (server, _) = serve(&cache).await;
    let acme_list = warm(&server, "/t/acme/items?page=1").await;
    let acme_item = warm(&server, "/t/acme/items/7").await;

    // The same page of the other tenant is its own entry: rendered, not acme's.
    let globex_list = assert_rendered(&server, "/t/globex/items?page=1").await;
    let globex_item = assert_rendered(&server, "/t/globex/items/7").await;
    assert_eq!(list(&globex_list).tenant, "globex");
    assert!(
        list(&globex_list)
            .items
            .iter()
            .all(|i| i.tenant == "globex")
    );
    assert_eq!(detail(&globex_item).item.tenant, "globex");
    assert_ne!(detail(&globex_item).item.name, detail(&acme_item).item.name);

    // Each tenant keeps being served its own page.
    assert_hit(&server, "/t/acme/items?page=1", &acme_list).await;
    assert_hit(&server, "/t/globex/items?page=1", &globex_list).await;
    assert_hit(&server, "/t/acme/items/7", &acme_item).await;
    assert_hit(&server, "/t/globex/items/7", &globex_item).await;

    // An unknown tenant is rejected before the cache is consulted.
    for _ in 0..2 {
        let unknown = server.fetch("/t/initech/items?page=1").await;
        assert_eq!(unknown.status, 404);
        assert_eq!(unknown.cache_status(), "", "the cache was not involved");
    }
}

async fn an_edit_invalidates_the_item_and_its_tenants_lists_only(cache: Cache) {
    let (server, _) = serve(&cache).await;
    let acme_page1 = warm(&server, "/t/acme/items?page=1").await;
    let acme_page2 = warm(&server, "/t/acme/items?page=2").await;
    let acme_item7 = warm(&server, "/t/acme/items/7").await;
    let acme_item8 = warm(&server, "/t/acme/items/8").await;
    let globex_page1 = warm(&server, "/t/globex/items?page=1").await;
    let globex_item7 = warm(&server, "/t/globex/items/7").await;

    let reply = edit(
        &server,
        "acme",
        7,
        r#"{"name":"Blue lamp (acme)","price":1999}"#,
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.cache_status(), "", "admin requests are not cached");
    let updated: Item = serde_json::from_str(&reply.text()).expect("the updated item");
    assert_eq!(
        (
            updated.tenant.as_str(),
            updated.id,
            updated.name.as_str(),
            updated.price
        ),
        ("acme", 7, "Blue lamp (acme)", 1999)
    );

    // The item's detail page shows the edit.
    let item7 = detail(&assert_rendered(&server, "/t/acme/items/7").await);
    assert_eq!(item7.item, updated);
    assert_ne!(detail(&acme_item7).item, updated);
    // Every list page of the tenant is rendered again; page 1 shows the edit.
    let page1 = list(&assert_rendered(&server, "/t/acme/items?page=1").await);
    assert_eq!(page1.items[6], updated);
    assert_ne!(list(&acme_page1).items[6], updated);
    let page2 = assert_rendered(&server, "/t/acme/items?page=2").await;
    assert_eq!(ids(&list(&page2)), ids(&list(&acme_page2)));

    // The tenant's other detail pages, and everything of the other tenant, stay.
    assert_hit(&server, "/t/acme/items/8", &acme_item8).await;
    assert_hit(&server, "/t/globex/items?page=1", &globex_page1).await;
    assert_hit(&server, "/t/globex/items/7", &globex_item7).await;

    // A second edit invalidates again (the new pages were stored in between).
    let reply = edit(&server, "acme", 7, r#"{"price":2500}"#).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let item7 = detail(&assert_rendered(&server, "/t/acme/items/7").await);
    assert_eq!(
        (item7.item.name.as_str(), item7.item.price),
        ("Blue lamp (acme)", 2500)
    );
    assert_eq!(
        list(&assert_rendered(&server, "/t/acme/items?page=1").await).items[6].price,
        2500
    );
}

async fn a_rejected_edit_changes_and_invalidates_nothing(cache: Cache) {
    let (server, _) = serve(&cache).await;
    let page1 = warm(&server, "/t/acme/items?page=1").await;
    let item7 = warm(&server, "/t/acme/items/7").await;

    let missing = edit(&server, "acme", 999, r#"{"price":1}"#).await;
    assert_eq!(missing.status, 404, "{}", missing.text());
    let unknown_tenant = edit(&server, "initech", 7, r#"{"price":1}"#).await;
    assert_eq!(unknown_tenant.status, 404, "{}", unknown_tenant.text());
    let empty_name = edit(&server, "acme", 7, r#"{"name":""}"#).await;
    assert_eq!(empty_name.status, 422, "{}", empty_name.text());
    let unknown_field = edit(&server, "acme", 7, r#"{"colour":"blue"}"#).await;
    assert!(
        unknown_field.status.is_client_error(),
        "{}",
        unknown_field.status
    );

    assert_hit(&server, "/t/acme/items?page=1", &page1).await;
    assert_hit(&server, "/t/acme/items/7", &item7).await;
}

async fn pagination_pages_are_distinct(cache: Cache) {
    let (server, _) = serve(&cache).await;
    let page1 = list(&warm(&server, "/t/acme/items?page=1").await);
    let page2 = list(&warm(&server, "/t/acme/items?page=2").await);
    let last = list(&warm(&server, "/t/acme/items?page=5").await);
    let small = list(&warm(&server, "/t/acme/items?page=2&per_page=5").await);
    assert_eq!(ids(&page1), (1..=10).collect::<Vec<_>>());
    assert_eq!(ids(&page2), (11..=20).collect::<Vec<_>>());
    assert_eq!(ids(&last), (41..=50).collect::<Vec<_>>());
    assert_eq!(ids(&small), (6..=10).collect::<Vec<_>>());
    assert_eq!((page1.pages, small.pages), (5, 10));

    // Still each its own page once all are stored.
    for (path, page) in [
        ("/t/acme/items?page=1", &page1),
        ("/t/acme/items?page=2", &page2),
        ("/t/acme/items?page=2&per_page=5", &small),
    ] {
        let reply = get_ok(&server, path).await;
        assert!(reply.is_hit(), "{path}: {:?}", reply.cache_status());
        assert_eq!(ids(&list(&reply.text())), ids(page), "{path}");
    }

    // Out of range: errors, never stored.
    for path in [
        "/t/acme/items?page=6",
        "/t/acme/items?page=0",
        "/t/acme/items?per_page=51",
        "/t/acme/items?page=two",
    ] {
        for _ in 0..2 {
            let reply = server.fetch(path).await;
            assert!(reply.status.is_client_error(), "{path}: {}", reply.status);
            assert!(
                !reply.is_hit() && !reply.is_stored(),
                "{path}: {:?}",
                reply.cache_status()
            );
        }
    }
}

async fn tracking_parameters_do_not_split_the_list_cache(cache: Cache) {
    let (server, state) = serve(&cache).await;
    let page2 = warm(&server, "/t/acme/items?page=2&per_page=5").await;
    for path in [
        "/t/acme/items?page=2&per_page=5&utm_source=newsletter",
        "/t/acme/items?utm_source=ads&utm_medium=cpc&per_page=5&page=2",
        "/t/acme/items?per_page=5&page=2",
    ] {
        assert_hit(&server, path, &page2).await;
    }
    assert_eq!(state.renders(), 1);
}

async fn purges_reach_a_tenant_or_every_tenant(cache: Cache) {
    let (server, _) = serve(&cache).await;
    let globex_list = warm(&server, "/t/globex/items?page=1").await;
    let globex_item = warm(&server, "/t/globex/items/3").await;
    warm(&server, "/t/acme/items?page=1").await;
    warm(&server, "/t/acme/items/3").await;

    let reply = send_json(server.addr(), "POST", "/t/acme/admin/purge", "").await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_rendered(&server, "/t/acme/items?page=1").await;
    assert_rendered(&server, "/t/acme/items/3").await;
    assert_hit(&server, "/t/globex/items?page=1", &globex_list).await;
    assert_hit(&server, "/t/globex/items/3", &globex_item).await;

    let reply = send_json(server.addr(), "POST", "/admin/purge", "").await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    for path in [
        "/t/acme/items?page=1",
        "/t/acme/items/3",
        "/t/globex/items?page=1",
        "/t/globex/items/3",
    ] {
        assert_rendered(&server, path).await;
    }
}

async fn health_is_not_cached(cache: Cache) {
    let (server, _) = serve(&cache).await;
    for _ in 0..2 {
        let reply = server.fetch("/health").await;
        assert_eq!(
            (reply.status.as_u16(), reply.text().as_str()),
            (200, "ok\n")
        );
        assert_eq!(reply.cache_status(), "", "the cache was not involved");
    }
}

both_stores!(
    list_page_is_stored_then_hit,
    detail_page_is_stored_then_hit,
    tenants_never_share_a_page,
    an_edit_invalidates_the_item_and_its_tenants_lists_only,
    a_rejected_edit_changes_and_invalidates_nothing,
    pagination_pages_are_distinct,
    tracking_parameters_do_not_split_the_list_cache,
    purges_reach_a_tenant_or_every_tenant,
    health_is_not_cached,
);
