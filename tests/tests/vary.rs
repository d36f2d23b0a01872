//! Responses with `Vary`: one page per value of the named request headers, whatever
//! the order and case of the names; an absent header is not an empty one.

use axum::{
    Extension, Router,
    extract::State,
    http::{HeaderMap, header},
    response::{IntoResponse, Response},
    routing::get,
};
use cache_page_runtime::{Cache, cache_page};
use cache_page_tests::{Hits, Reply, both_stores, fetch, fetch_with};

fn value(headers: &HeaderMap, name: header::HeaderName) -> String {
    match headers.get(name) {
        Some(v) => format!("{:?}", v.to_str().unwrap_or("?")),
        None => "none".to_owned(),
    }
}

#[cache_page(timeout = 60)]
async fn by_language(State(hits): State<Hits>, headers: HeaderMap) -> Response {
    let n = hits.bump();
    let lang = value(&headers, header::ACCEPT_LANGUAGE);
    (
        [(header::VARY, "Accept-Language")],
        format!("lang {lang} run {n}"),
    )
        .into_response()
}

/// Names the same two headers, in another order and case on every other run.
#[cache_page(timeout = 60)]
async fn two_spellings(State(hits): State<Hits>, headers: HeaderMap) -> Response {
    let n = hits.bump();
    let vary = if n % 2 == 1 {
        "Cookie, Accept-Language"
    } else {
        "accept-language,COOKIE"
    };
    let body = format!(
        "lang {} cookie {} run {n}",
        value(&headers, header::ACCEPT_LANGUAGE),
        value(&headers, header::COOKIE)
    );
    ([(header::VARY, vary)], body).into_response()
}

#[cache_page(timeout = 60)]
async fn by_cookie(State(hits): State<Hits>, headers: HeaderMap) -> Response {
    let n = hits.bump();
    let cookie = value(&headers, header::COOKIE);
    (
        [(header::VARY, "Cookie")],
        format!("page of {cookie} run {n}"),
    )
        .into_response()
}

fn app(cache: &Cache, hits: &Hits) -> Router {
    Router::new()
        .route("/lang", get(by_language))
        .route("/two", get(two_spellings))
        .route("/cookie", get(by_cookie))
        .with_state(hits.clone())
        .layer(Extension(cache.clone()))
}

fn assert_hit(reply: &Reply, body: &str, what: &str) {
    assert!(
        reply.is_hit(),
        "{what}: not a hit: {:?}",
        reply.cache_status()
    );
    assert_eq!(reply.text(), body, "{what}");
}

async fn one_page_per_header_value(cache: Cache) {
    let hits = Hits::new();
    let app = app(&cache, &hits);
    let en = [("accept-language", "en")];
    let fr = [("accept-language", "fr")];

    let first = fetch_with(&app, "/lang", &en).await;
    assert_eq!(first.text(), "lang \"en\" run 1");
    assert!(first.cache_status().contains("fwd=uri-miss"));
    assert_hit(
        &fetch_with(&app, "/lang", &en).await,
        "lang \"en\" run 1",
        "en again",
    );

    let other = fetch_with(&app, "/lang", &fr).await;
    assert!(
        other.cache_status().contains("fwd=vary-miss"),
        "another value is a vary miss: {:?}",
        other.cache_status()
    );
    assert!(other.is_stored());
    assert_eq!(other.text(), "lang \"fr\" run 2", "fr was served en's page");
    assert_hit(
        &fetch_with(&app, "/lang", &fr).await,
        "lang \"fr\" run 2",
        "fr again",
    );
    assert_hit(
        &fetch_with(&app, "/lang", &en).await,
        "lang \"en\" run 1",
        "en after fr was stored",
    );
    assert_eq!(hits.get(), 2);
}

async fn order_and_case_of_vary_names_do_not_matter(cache: Cache) {
    let hits = Hits::new();
    let app = app(&cache, &hits);
    let a = [("accept-language", "en"), ("cookie", "id=a")];
    let b = [("accept-language", "fr"), ("cookie", "id=a")];

    let first = fetch_with(&app, "/two", &a).await;
    assert_eq!(first.header("vary"), Some("Cookie, Accept-Language"));
    // The second run answers `vary: accept-language,COOKIE`: the same names, so the
    // same vary index, and the first variant stays reachable.
    let second = fetch_with(&app, "/two", &b).await;
    assert_eq!(second.header("vary"), Some("accept-language,COOKIE"));
    assert!(second.is_stored(), "{:?}", second.cache_status());
    assert_hit(
        &fetch_with(&app, "/two", &a).await,
        &first.text(),
        "first variant",
    );
    assert_hit(
        &fetch_with(&app, "/two", &b).await,
        &second.text(),
        "second variant",
    );
    assert_eq!(hits.get(), 2, "a respelled Vary made a variant unreachable");
}

async fn vary_cookie_keeps_users_apart(cache: Cache) {
    let hits = Hits::new();
    let app = app(&cache, &hits);
    let alice = [("cookie", "session=alice")];
    let bob = [("cookie", "session=bob")];

    let a = fetch_with(&app, "/cookie", &alice).await;
    assert_eq!(a.text(), "page of \"session=alice\" run 1");
    let b = fetch_with(&app, "/cookie", &bob).await;
    assert!(!b.is_hit(), "bob was served alice's page: {}", b.text());
    assert_eq!(b.text(), "page of \"session=bob\" run 2");
    let anonymous = fetch(&app, "/cookie").await;
    assert_eq!(anonymous.text(), "page of none run 3");
    for _ in 0..3 {
        assert_hit(
            &fetch_with(&app, "/cookie", &alice).await,
            &a.text(),
            "alice",
        );
        assert_hit(&fetch_with(&app, "/cookie", &bob).await, &b.text(), "bob");
        assert_hit(
            &fetch(&app, "/cookie").await,
            &anonymous.text(),
            "anonymous",
        );
    }
    assert_eq!(hits.get(), 3);
}

async fn a_missing_header_is_not_an_empty_one(cache: Cache) {
    let hits = Hits::new();
    let app = app(&cache, &hits);
    let missing = fetch(&app, "/lang").await;
    assert_eq!(missing.text(), "lang none run 1");
    let empty = fetch_with(&app, "/lang", &[("accept-language", "")]).await;
    assert!(
        !empty.is_hit(),
        "an empty header was served the page of a missing one"
    );
    assert_eq!(empty.text(), "lang \"\" run 2");
    assert_hit(
        &fetch(&app, "/lang").await,
        "lang none run 1",
        "missing again",
    );
    assert_hit(
        &fetch_with(&app, "/lang", &[("accept-language", "")]).await,
        "lang \"\" run 2",
        "empty again",
    );
}

both_stores!(
    one_page_per_header_value,
    order_and_case_of_vary_names_do_not_matter,
    vary_cookie_keeps_users_apart,
    a_missing_header_is_not_an_empty_one,
);
