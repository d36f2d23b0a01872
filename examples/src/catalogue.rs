//! A small multi-tenant catalogue whose pages are cached with cache-page: list pages
//! with pagination, detail pages, and admin endpoints that edit an item and invalidate
//! exactly the pages that showed it.
//!
//! Run it with `cargo run -p examples --example catalogue` (in-process store) or
//! `REDIS_URL=redis://127.0.0.1:6379 cargo run -p examples --example catalogue`
//! (Redis); `examples/tests/catalogue.rs` drives it over HTTP on both stores.
//!
//! # Tenants
//!
//! The tenant is the first segment of the path, `/t/{tenant}/…` (`acme` and `globex`
//! are seeded). A path rather than a header because cache-page adds
//! `Cache-Control: max-age` to the pages it stores: a browser or CDN in front of the
//! service may then keep them too, and a shared cache keys on the URL. With the tenant
//! in a header, every page would also need `Vary: x-tenant` to stay safe downstream.
//! The [`Tenant`] extractor rejects unknown tenants with `404` before the cache is
//! consulted, so a made-up tenant never creates a key or a group in the store.
//!
//! # Routes
//!
//! | route | cached | |
//! |-------|--------|---|
//! | `GET /t/{tenant}/items?page=N&per_page=M` | 300 s | a list page (`per_page` 1..=50, default 10) |
//! | `GET /t/{tenant}/items/{id}` | 300 s | an item's detail page |
//! | `PUT /t/{tenant}/admin/items/{id}` | no | edits `{ "name"?, "price"? }`, invalidates the item's pages |
//! | `POST /t/{tenant}/admin/purge` | no | invalidates every page of the tenant |
//! | `POST /admin/purge` | no | invalidates every page of every tenant |
//! | `GET /health` | no | `ok` |
//!
//! Pages are JSON; `rendered_at` (Unix milliseconds) and `render` (a counter of
//! renders) change only when the handler runs, so a hit shows the same values again.
//! Prices are in cents. The admin routes have no authentication: add your own.
//!
//! # Keys, groups and tags
//!
//! | page | key | groups | tag |
//! |------|-----|--------|-----|
//! | list | path + `page`, `per_page` | `catalogue`, `tenant:{t}`, `tenant:{t}:lists` | |
//! | detail | path | `catalogue`, `tenant:{t}` | `item:{t}:{id}` |
//!
//! An edit of item 7 of `acme` invalidates the path `/t/acme/items/7`, deletes the tag
//! `item:acme:7` and bumps the group `tenant:acme:lists`: the item's detail page and
//! every list page of `acme` are rendered again, the other detail pages of `acme` and
//! every page of `globex` stay cached.

use std::{
    collections::BTreeMap,
    sync::{
        Arc, RwLock, RwLockReadGuard, RwLockWriteGuard,
        atomic::{AtomicU64, Ordering},
    },
    time::{SystemTime, UNIX_EPOCH},
};

use axum::{
    Extension, Json, Router,
    extract::{FromRequestParts, Path, Query, RawPathParams, State},
    http::{StatusCode, request::Parts},
    response::{IntoResponse, Response},
    routing::{get, post, put},
};
use cache_page_runtime::{Cache, cache_page, keys};
use serde::{Deserialize, Serialize};

/// The seeded tenants.
pub const TENANTS: [&str; 2] = ["acme", "globex"];

/// Items seeded per tenant, with ids `1..=ITEMS_PER_TENANT`.
pub const ITEMS_PER_TENANT: u32 = 50;

/// Items on a list page when `per_page` is not given.
pub const DEFAULT_PER_PAGE: u32 = 10;

/// The largest `per_page` accepted. With `page` bounded by the number of pages too,
/// a tenant has a bounded number of list pages: query strings cannot fill the cache.
pub const MAX_PER_PAGE: u32 = 50;

/// How long a page is cached, in seconds (also its `Cache-Control: max-age`).
pub const PAGE_TIMEOUT: u64 = 300;

/// The group of every page of every tenant.
pub const CATALOGUE_GROUP: &str = "catalogue";

/// An item of a tenant's catalogue. Ids are per tenant: `acme` and `globex` both have
/// an item 7, and they are different items.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Item {
    /// The id, unique within the tenant.
    pub id: u32,
    /// The tenant the item belongs to.
    pub tenant: String,
    /// The name shown on the pages.
    pub name: String,
    /// The price in cents.
    pub price: u64,
    /// When the item was last changed, Unix milliseconds.
    pub updated_at: u64,
}

/// The items of every tenant, in memory.
#[derive(Debug, Default)]
pub struct Catalogue {
    tenants: BTreeMap<String, BTreeMap<u32, Item>>,
}

impl Catalogue {
    /// [`TENANTS`] × [`ITEMS_PER_TENANT`] items with made-up names and prices.
    pub fn seeded() -> Catalogue {
        const ADJECTIVES: [&str; 8] = [
            "Red", "Small", "Sturdy", "Quiet", "Bright", "Folding", "Vintage", "Spare",
        ];
        const NOUNS: [&str; 7] = ["lamp", "chair", "kettle", "clock", "shelf", "rug", "vase"];
        let now = now_ms();
        let mut catalogue = Catalogue::default();
        for (t, tenant) in TENANTS.iter().enumerate() {
            let items = (1..=ITEMS_PER_TENANT)
                .map(|id| {
                    let n = id as usize + t * 3;
                    let item = Item {
                        id,
                        tenant: (*tenant).to_owned(),
                        name: format!(
                            "{} {} ({tenant})",
                            ADJECTIVES[n % ADJECTIVES.len()],
                            NOUNS[n % NOUNS.len()]
                        ),
                        price: 500 + u64::from(id) * 137 % 9_000 + t as u64 * 50,
                        updated_at: now,
                    };
                    (id, item)
                })
                .collect();
            catalogue.tenants.insert((*tenant).to_owned(), items);
        }
        catalogue
    }

    /// Whether `tenant` exists.
    pub fn has_tenant(&self, tenant: &str) -> bool {
        self.tenants.contains_key(tenant)
    }

    /// The items of `tenant`, by id.
    pub fn items(&self, tenant: &str) -> impl Iterator<Item = &Item> {
        self.tenants
            .get(tenant)
            .into_iter()
            .flat_map(|m| m.values())
    }

    /// One item of `tenant`.
    pub fn item(&self, tenant: &str, id: u32) -> Option<&Item> {
        self.tenants.get(tenant)?.get(&id)
    }

    fn item_mut(&mut self, tenant: &str, id: u32) -> Option<&mut Item> {
        self.tenants.get_mut(tenant)?.get_mut(&id)
    }
}

/// The application's state: the catalogue, and a counter of page renders.
#[derive(Clone, Debug, Default)]
pub struct AppState {
    catalogue: Arc<RwLock<Catalogue>>,
    renders: Arc<AtomicU64>,
}

impl AppState {
    /// A state on `catalogue`.
    pub fn new(catalogue: Catalogue) -> AppState {
        AppState {
            catalogue: Arc::new(RwLock::new(catalogue)),
            renders: Arc::default(),
        }
    }

    /// A state on [`Catalogue::seeded`].
    pub fn seeded() -> AppState {
        AppState::new(Catalogue::seeded())
    }

    /// How many pages the handlers rendered (cache hits render nothing).
    pub fn renders(&self) -> u64 {
        self.renders.load(Ordering::SeqCst)
    }

    /// Reads the catalogue.
    pub fn read(&self) -> RwLockReadGuard<'_, Catalogue> {
        self.catalogue.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Catalogue> {
        self.catalogue.write().unwrap_or_else(|e| e.into_inner())
    }

    fn render(&self) -> u64 {
        self.renders.fetch_add(1, Ordering::SeqCst) + 1
    }
}

/// The catalogue's routes. The pages use the cache a request carries
/// (`.layer(Extension(cache))`), else the one [`install`](cache_page_runtime::install)ed,
/// else an in-process one; the admin routes invalidate in the same cache.
pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/t/{tenant}/items", get(list))
        .route("/t/{tenant}/items/{id}", get(detail))
        .route("/t/{tenant}/admin/items/{id}", put(edit))
        .route("/t/{tenant}/admin/purge", post(purge_tenant))
        .route("/admin/purge", post(purge_all))
        .route("/health", get(health))
        .with_state(state)
}

// ---------------------------------------------------------------------------------
// Keys, groups and tags.
//
// Why two tenants can never share a page: a page's entry is named
// md5(prefix, [(group, version)…], key) (see `cache_page_runtime::hash_key`).
//  1. The key is `keys::query_params(&["page", "per_page"])`: the path plus those two
//     parameters. The path starts with `/t/{tenant}/`, so the keys differ.
//  2. Every page is in the group `tenant:{tenant}`, and a group's *name* is hashed
//     with its version, so even a key function that left the path out (say
//     `keys::query_key`) would give each tenant its own entries.
// Either one alone would be enough; the group is also what lets an edit reach "the
// list pages of this tenant" in O(1) without touching the other tenant's.
//
// The group and tag functions read the tenant from the path the router matched
// (`/t/{tenant}/…`, segment 2). They run only after every extractor succeeded, so
// `Tenant` has checked it is a known tenant by then.
// ---------------------------------------------------------------------------------

/// The tenant of a request to a `/t/{tenant}/…` route.
fn path_tenant(parts: &Parts) -> &str {
    parts.uri.path().split('/').nth(2).unwrap_or("")
}

/// The group of every page of a tenant (lists and details).
fn tenant_group(parts: &Parts) -> String {
    tenant_group_name(path_tenant(parts))
}

/// The group of a tenant's list pages.
fn tenant_lists_group(parts: &Parts) -> String {
    tenant_lists_group_name(path_tenant(parts))
}

/// The tag of an item's detail page: `item:{tenant}:{id}`.
fn item_tag(parts: &Parts) -> String {
    let id = parts.uri.path().split('/').nth(4).unwrap_or("");
    item_tag_name(path_tenant(parts), id)
}

/// `tenant:{tenant}`: every page of the tenant.
pub fn tenant_group_name(tenant: &str) -> String {
    format!("tenant:{tenant}")
}

/// `tenant:{tenant}:lists`: the tenant's list pages.
pub fn tenant_lists_group_name(tenant: &str) -> String {
    format!("tenant:{tenant}:lists")
}

/// `item:{tenant}:{id}`: the tag of an item's detail page.
pub fn item_tag_name(tenant: &str, id: impl std::fmt::Display) -> String {
    format!("item:{tenant}:{id}")
}

/// The path of an item's detail page.
pub fn detail_path(tenant: &str, id: u32) -> String {
    format!("/t/{tenant}/items/{id}")
}

// ---------------------------------------------------------------------------------
// Extractors.
// ---------------------------------------------------------------------------------

/// A known tenant, from the `{tenant}` segment of the path; `404` otherwise.
///
/// It runs on every request, hit or miss (cache-page runs the handler's extractors
/// before it looks the page up), so an unknown tenant is never looked up nor stored.
#[derive(Clone, Debug)]
pub struct Tenant(pub String);

impl FromRequestParts<AppState> for Tenant {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let params = RawPathParams::from_request_parts(parts, state)
            .await
            .map_err(IntoResponse::into_response)?;
        let tenant = params
            .iter()
            .find_map(|(name, value)| (name == "tenant").then_some(value))
            .unwrap_or("");
        if state.read().has_tenant(tenant) {
            Ok(Tenant(tenant.to_owned()))
        } else {
            Err(error(StatusCode::NOT_FOUND, "unknown tenant"))
        }
    }
}

/// The cache this request's pages use: the request's `Cache` extension, else the
/// default cache. Invalidations must go to the same cache as the pages.
fn cache_of(extension: Option<Extension<Cache>>) -> Cache {
    match extension {
        Some(Extension(cache)) => cache,
        None => cache_page_runtime::default_cache().clone(),
    }
}

#[derive(Deserialize)]
struct ItemId {
    id: u32,
}

/// The query of a list page.
#[derive(Debug, Deserialize)]
pub struct Paging {
    /// The page, from 1.
    pub page: Option<u32>,
    /// Items per page, 1..=[`MAX_PER_PAGE`].
    pub per_page: Option<u32>,
}

// ---------------------------------------------------------------------------------
// Pages.
// ---------------------------------------------------------------------------------

/// A list page.
#[derive(Debug, Serialize, Deserialize)]
pub struct ListPage {
    /// The tenant.
    pub tenant: String,
    /// The page, from 1.
    pub page: u32,
    /// Items per page.
    pub per_page: u32,
    /// The number of pages.
    pub pages: u32,
    /// The number of items of the tenant.
    pub total: u32,
    /// The items of this page.
    pub items: Vec<Item>,
    /// When the page was rendered, Unix milliseconds.
    pub rendered_at: u64,
    /// Which render of the process this was (1 for the first page rendered).
    pub render: u64,
}

/// A detail page.
#[derive(Debug, Serialize, Deserialize)]
pub struct DetailPage {
    /// The item.
    pub item: Item,
    /// When the page was rendered, Unix milliseconds.
    pub rendered_at: u64,
    /// Which render of the process this was (1 for the first page rendered).
    pub render: u64,
}

/// `GET /t/{tenant}/items?page=N&per_page=M`. The key keeps only `page` and
/// `per_page` of the query, so `?page=2&utm_source=mail` is served the page of
/// `?page=2`. Out-of-range pages are `400`/`404`, which are not stored.
#[cache_page(
    timeout = 300,
    key = keys::query_params(&["page", "per_page"]),
    group = "catalogue",
    group = tenant_group,
    group = tenant_lists_group,
)]
async fn list(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    Query(paging): Query<Paging>,
) -> Response {
    let per_page = paging.per_page.unwrap_or(DEFAULT_PER_PAGE);
    if !(1..=MAX_PER_PAGE).contains(&per_page) {
        return error(StatusCode::BAD_REQUEST, "per_page must be 1 to 50");
    }
    let page = paging.page.unwrap_or(1);
    let catalogue = state.read();
    let total = catalogue.items(&tenant).count() as u32;
    let pages = total.div_ceil(per_page).max(1);
    if page == 0 || page > pages {
        return error(StatusCode::NOT_FOUND, "no such page");
    }
    let items = catalogue
        .items(&tenant)
        .skip(((page - 1) * per_page) as usize)
        .take(per_page as usize)
        .cloned()
        .collect();
    drop(catalogue);
    Json(ListPage {
        tenant,
        page,
        per_page,
        pages,
        total,
        items,
        rendered_at: now_ms(),
        render: state.render(),
    })
    .into_response()
}

/// `GET /t/{tenant}/items/{id}`: keyed by its path, tagged `item:{tenant}:{id}`.
#[cache_page(
    timeout = 300,
    key = keys::path_key,
    group = "catalogue",
    group = tenant_group,
    tag = item_tag,
)]
async fn detail(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    Path(ItemId { id }): Path<ItemId>,
) -> Response {
    let Some(item) = state.read().item(&tenant, id).cloned() else {
        return error(StatusCode::NOT_FOUND, "no such item");
    };
    Json(DetailPage {
        item,
        rendered_at: now_ms(),
        render: state.render(),
    })
    .into_response()
}

/// The body of `PUT /t/{tenant}/admin/items/{id}`: the fields to change.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Edit {
    /// A new name (1 to 200 characters).
    pub name: Option<String>,
    /// A new price, in cents.
    pub price: Option<u64>,
}

/// `PUT /t/{tenant}/admin/items/{id}`: edits the item, then invalidates the pages that
/// show it, in the cache the pages use, and returns the updated item.
///
/// - its detail page: `invalidate_path` bumps the path's version, so a render that
///   read the item before the edit and is stored after it is never served; then
///   `invalidate_tag` deletes the entry at once (memory freed now);
/// - the tenant's list pages: `invalidate_group("tenant:{t}:lists")`, one command.
///
/// The other detail pages of the tenant, and every page of the other tenants, stay
/// cached. If the store cannot be reached, the edit is kept and the answer is `503`:
/// `PUT` is idempotent, so the client can retry, which invalidates again.
async fn edit(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    Path(ItemId { id }): Path<ItemId>,
    cache: Option<Extension<Cache>>,
    Json(edit): Json<Edit>,
) -> Response {
    if let Some(name) = &edit.name
        && !(1..=200).contains(&name.chars().count())
    {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "name must be 1 to 200 characters",
        );
    }
    let item = {
        let mut catalogue = state.write();
        let Some(item) = catalogue.item_mut(&tenant, id) else {
            return error(StatusCode::NOT_FOUND, "no such item");
        };
        if let Some(name) = edit.name {
            item.name = name;
        }
        if let Some(price) = edit.price {
            item.price = price;
        }
        item.updated_at = now_ms();
        item.clone()
    };

    let cache = cache_of(cache);
    let invalidated = async {
        cache.invalidate_path(&detail_path(&tenant, id)).await?;
        cache.invalidate_tag(&item_tag_name(&tenant, id)).await?;
        cache
            .invalidate_group(&tenant_lists_group_name(&tenant))
            .await
    }
    .await;
    match invalidated {
        Ok(_) => Json(item).into_response(),
        Err(err) => invalidation_failed(&err),
    }
}

/// `POST /t/{tenant}/admin/purge`: every page of the tenant, in O(1).
async fn purge_tenant(Tenant(tenant): Tenant, cache: Option<Extension<Cache>>) -> Response {
    let group = tenant_group_name(&tenant);
    match cache_of(cache).invalidate_group(&group).await {
        Ok(_) => format!("group `{group}` invalidated\n").into_response(),
        Err(err) => invalidation_failed(&err),
    }
}

/// `POST /admin/purge`: every page of every tenant, in O(1).
async fn purge_all(cache: Option<Extension<Cache>>) -> Response {
    match cache_of(cache).invalidate_group(CATALOGUE_GROUP).await {
        Ok(_) => format!("group `{CATALOGUE_GROUP}` invalidated\n").into_response(),
        Err(err) => invalidation_failed(&err),
    }
}

/// `GET /health`: not cached (no attribute, so the cache is not involved at all).
async fn health() -> &'static str {
    "ok\n"
}

fn invalidation_failed(err: &cache_page_runtime::Error) -> Response {
    tracing::error!(error = %err, "invalidation failed");
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        "saved, but the cached pages could not be invalidated; retry",
    )
}

fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(serde_json::json!({ "error": message }))).into_response()
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_every_tenant() {
        let catalogue = Catalogue::seeded();
        for tenant in TENANTS {
            assert_eq!(catalogue.items(tenant).count(), ITEMS_PER_TENANT as usize);
            assert_eq!(
                catalogue.item(tenant, 7).map(|i| i.tenant.as_str()),
                Some(tenant)
            );
        }
        assert_ne!(
            catalogue.item("acme", 7).map(|i| &i.name),
            catalogue.item("globex", 7).map(|i| &i.name)
        );
    }

    #[test]
    fn groups_and_tags_come_from_the_path() {
        let (parts, ()) = axum::http::Request::get("/t/acme/items/7?x=1")
            .body(())
            .expect("a request")
            .into_parts();
        assert_eq!(tenant_group(&parts), "tenant:acme");
        assert_eq!(tenant_lists_group(&parts), "tenant:acme:lists");
        assert_eq!(item_tag(&parts), "item:acme:7");
    }

    #[test]
    fn tenants_hash_apart_even_with_the_same_key() {
        // The group names alone separate the tenants' entries.
        let a = cache_page_runtime::hash_key("", &[("tenant:acme", 1)], "?page=1");
        let b = cache_page_runtime::hash_key("", &[("tenant:globex", 1)], "?page=1");
        assert_ne!(a, b);
    }
}
