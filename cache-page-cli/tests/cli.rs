//! The `cache-page` binary, run as an operator would, against a private redis-server
//! (or the one `CACHE_PAGE_REDIS_URL` names; every test keeps to a namespace of its
//! own).

use std::{
    io::{BufRead, BufReader},
    process::{Command, Output, Stdio},
    time::Duration,
};

use cache_page_runtime::{
    Cache, RedisStore, Store, Version,
    axum::{Extension, Router, routing::get},
    cache_page, hash_key, key_preimage,
    keys::path_key,
};
use cache_page_tests::{RedisServer, fetch, free_port, patient_cache, unique_namespace};
use md5::{Digest, Md5};

const BIN: &str = env!("CARGO_BIN_EXE_cache-page");

/// Runs the binary with `args`; never waits more than the binary's own timeouts.
fn cli(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env_remove("REDIS_URL")
        .env_remove("CACHE_PAGE_NAMESPACE")
        .stdin(Stdio::null())
        .output()
        .expect("the cache-page binary runs")
}

/// Runs the binary against `server` in namespace `ns`.
fn cli_on(server: &RedisServer, ns: &str, args: &[&str]) -> Output {
    let mut all = vec!["--redis-url", server.url(), "--namespace", ns];
    all.extend_from_slice(args);
    cli(&all)
}

fn stdout(out: &Output) -> String {
    String::from_utf8(out.stdout.clone()).expect("UTF-8 output")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The output of a command that must succeed.
#[track_caller]
fn ok(out: Output) -> String {
    assert_eq!(
        out.status.code(),
        Some(0),
        "expected success; stdout: {}; stderr: {}",
        stdout(&out),
        stderr(&out)
    );
    stdout(&out)
}

/// A command that must fail with `code`; returns its stderr.
#[track_caller]
fn fails(out: Output, code: i32) -> String {
    let err = stderr(&out);
    assert_eq!(
        out.status.code(),
        Some(code),
        "expected exit status {code}; stdout: {}; stderr: {err}",
        stdout(&out)
    );
    assert!(err.starts_with("error: "), "no error line: {err}");
    assert!(!err.contains("panicked"), "the binary panicked: {err}");
    err
}

fn md5_hex(bytes: &[u8]) -> String {
    Md5::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A store on `server` in namespace `ns`.
fn store(server: &RedisServer, ns: &str) -> RedisStore {
    RedisStore::builder(server.url())
        .namespace(ns)
        .command_timeout(Duration::from_secs(5))
        .connect_timeout(Duration::from_secs(5))
        .build()
        .expect("a valid Redis URL")
}

#[cache_page(timeout = 60, key = path_key, group = "views", prefix = "p")]
async fn items() -> &'static str {
    "items"
}

/// A router whose `/items` page is cached in `cache`.
fn app(cache: &Cache) -> Router {
    Router::new()
        .route("/items", get(items))
        .layer(Extension(cache.clone()))
}

#[test]
fn every_command_has_help_and_exits_0() {
    let commands: &[&[&str]] = &[
        &[],
        &["invalidate"],
        &["invalidate", "group"],
        &["invalidate", "path"],
        &["invalidate", "url"],
        &["invalidate", "prefix"],
        &["invalidate", "tag"],
        &["key"],
        &["version"],
        &["count"],
        &["list"],
    ];
    for command in commands {
        let mut args = command.to_vec();
        args.push("--help");
        let help = ok(cli(&args));
        let usage = format!("Usage: cache-page {}", command.join(" "));
        assert!(help.contains(usage.trim()), "{args:?}: {help}");
        assert!(
            help.contains("Exit status:"),
            "{args:?} documents no exit status"
        );
        assert!(
            help.contains("--redis-url"),
            "{args:?} shows no --redis-url"
        );
    }
    let version = ok(cli(&["--version"]));
    assert!(version.starts_with("cache-page "), "{version}");
}

#[test]
fn no_command_is_a_usage_error() {
    let out = cli(&[]);
    assert_eq!(out.status.code(), Some(2));
    let out = cli(&["frobnicate"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("unrecognized subcommand"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn key_with_given_versions_is_hash_key_and_never_touches_redis() {
    // Nothing listens there: with every version given, Redis is not needed.
    let nowhere = format!("redis://127.0.0.1:{}", free_port());
    let out = ok(cli(&[
        "--redis-url",
        &nowhere,
        "--namespace",
        "shop",
        "key",
        "/foo?page=2",
        "--key",
        "path",
        "--prefix",
        "p",
        "--group",
        "views",
        "--group",
        "tenant-7",
        "--version",
        "views=1732147200000000",
        "--version",
        "tenant-7=3",
        "--show-preimage",
    ]));
    let groups = [("views", 1732147200000000), ("tenant-7", 3)];
    let hash = hash_key("p", &groups, "/foo");
    let preimage = key_preimage("p", &groups, "/foo");
    assert_eq!(out, format!("shop:page:{hash}\n{preimage}\n"));
    // The README's recipe: printf '%s' '<preimage>' | md5sum.
    assert_eq!(
        preimage,
        "1:p,1:2,5:views,16:1732147200000000,8:tenant-7,1:3,4:/foo,"
    );
    assert_eq!(md5_hex(preimage.as_bytes()), hash);

    // The default key: host, path, and the query in canonical order.
    let out = ok(cli(&[
        "--redis-url",
        &nowhere,
        "key",
        "https://shop.test/items?b=2&a=1",
        "--version",
        "views=7",
        "--group",
        "views",
    ]));
    let hash = hash_key("", &[("views", 7)], "shop.test/items?a=1&b=2");
    assert_eq!(out, format!("cache-page:page:{hash}\n"));
    // The same with --host, and with a custom key function's output given as is.
    let with_host = ok(cli(&[
        "--redis-url",
        &nowhere,
        "key",
        "/items?a=1&b=%32",
        "--host",
        "shop.test",
        "--group",
        "views",
        "--version",
        "views=7",
    ]));
    assert_eq!(with_host, out);
    let raw = ok(cli(&[
        "--redis-url",
        &nowhere,
        "key",
        "--raw-key",
        "shop.test/items?a=1&b=2",
        "--group",
        "views",
        "--version",
        "views=7",
    ]));
    assert_eq!(raw, out);

    // keys::query_params(&["page"]) and keys::query_key, without groups.
    let out = ok(cli(&[
        "--redis-url",
        &nowhere,
        "key",
        "/l?utm=x&page=3",
        "--param",
        "page",
    ]));
    assert_eq!(
        out,
        format!("cache-page:page:{}\n", hash_key("", &[], "/l?page=3"))
    );
    let out = ok(cli(&[
        "--redis-url",
        &nowhere,
        "key",
        "/l?z=1&a=2",
        "--key",
        "query",
    ]));
    assert_eq!(
        out,
        format!("cache-page:page:{}\n", hash_key("", &[], "?a=2&z=1"))
    );

    // --json carries the parts.
    let out = ok(cli(&[
        "--redis-url",
        &nowhere,
        "--json",
        "key",
        "/foo",
        "--key",
        "path",
        "--prefix",
        "p",
        "--group",
        "views",
        "--version",
        "views=7",
    ]));
    let json: serde_json::Value = serde_json::from_str(out.trim()).expect("one JSON object");
    assert_eq!(json["hash"], hash_key("p", &[("views", 7)], "/foo"));
    assert_eq!(json["preimage"], "1:p,1:1,5:views,1:7,4:/foo,");
    assert_eq!(json["groups"][0]["version"], 7);
}

#[tokio::test]
async fn key_finds_the_page_a_handler_stored_and_invalidate_group_moves_it() {
    let server = RedisServer::start();
    let ns = unique_namespace("cli-key");
    let cache = patient_cache(store(&server, &ns));
    let app = app(&cache);
    fetch(&app, "/items?page=2").await;

    let key_args = [
        "key",
        "/items?page=2",
        "--key",
        "path",
        "--prefix",
        "p",
        "--group",
        "views",
    ];
    let key = ok(cli_on(&server, &ns, &key_args));
    let key = key.trim();
    assert!(key.starts_with(&format!("{ns}:page:")), "{key}");
    let exists: u64 = server.cmd(&["EXISTS", key]).await;
    assert_eq!(exists, 1, "the handler's page is not at {key}");

    // The key is hash_key over the version that `version` shows.
    let before: u64 = ok(cli_on(&server, &ns, &["version", "views"]))
        .trim()
        .parse()
        .expect("a version");
    assert_eq!(before, cache.group_version("views").await.unwrap());
    assert_eq!(
        key,
        format!(
            "{ns}:page:{}",
            hash_key("p", &[("views", before)], "/items")
        )
    );

    // invalidate group prints the new version, which `version` then shows.
    let bumped: u64 = ok(cli_on(&server, &ns, &["invalidate", "group", "views"]))
        .trim()
        .parse()
        .expect("a version");
    assert_eq!(bumped, before + 1);
    let now = ok(cli_on(&server, &ns, &["version", "views"]));
    assert_eq!(now.trim(), bumped.to_string());
    assert_eq!(cache.group_version("views").await.unwrap(), bumped);

    // The page now lives (once rendered again) at another key.
    let moved = ok(cli_on(&server, &ns, &key_args));
    assert_ne!(moved.trim(), key);
    let exists: u64 = server.cmd(&["EXISTS", moved.trim()]).await;
    assert_eq!(exists, 0);
    fetch(&app, "/items").await;
    let exists: u64 = server.cmd(&["EXISTS", moved.trim()]).await;
    assert_eq!(exists, 1);
}

#[tokio::test]
async fn invalidate_group_soft_records_the_version_before() {
    let server = RedisServer::start();
    let ns = unique_namespace("cli-soft");
    let cache = patient_cache(store(&server, &ns));
    let before = cache.group_version("views").await.unwrap();

    let bumped: u64 = ok(cli_on(
        &server,
        &ns,
        &["invalidate", "group", "--soft", "views"],
    ))
    .trim()
    .parse()
    .expect("a version");
    assert_eq!(bumped, before + 1);
    assert_eq!(cache.group_version("views").await.unwrap(), bumped);
    let record: String = server.cmd(&["GET", &format!("{ns}:soft:views")]).await;
    let fields: Vec<&str> = record.split(' ').collect();
    assert_eq!(fields[..2], [before.to_string(), bumped.to_string()]);
    assert_eq!(fields.len(), 3, "{record:?}");
    // Listed with its TTL: a day at most.
    let listed = ok(cli_on(&server, &ns, &["list", "--kind", "soft"]));
    let (key, ttl) = listed.trim().split_once('\t').expect("key and TTL");
    assert_eq!(key, format!("{ns}:soft:views"));
    let ttl: u64 = ttl.parse().expect("a TTL in seconds");
    assert!(ttl > 0 && ttl <= 86_400, "TTL {ttl}");
    drop(server);
}

#[tokio::test]
async fn invalidate_path_url_prefix_and_tag_print_what_version_shows() {
    let server = RedisServer::start();
    let ns = unique_namespace("cli-invalidate");
    let store = store(&server, &ns);

    let out = ok(cli_on(
        &server,
        &ns,
        &["invalidate", "path", "/products/42", "/other"],
    ));
    let versions: Vec<&str> = out.lines().collect();
    assert_eq!(versions.len(), 2, "one version per path: {out}");
    let shown = ok(cli_on(&server, &ns, &["version", "--path", "/products/42"]));
    assert_eq!(shown.trim(), versions[0]);
    let v = Store::version(&store, Version::Path("/products/42"))
        .await
        .unwrap();
    assert_eq!(v.to_string(), versions[0]);

    // URLs are compared in canonical form: order and encoding of the query.
    let out = ok(cli_on(&server, &ns, &["invalidate", "url", "/p?b=2&a=1"]));
    let shown = ok(cli_on(&server, &ns, &["version", "--url", "/p?a=1&b=%32"]));
    assert_eq!(shown, out);
    let v = Store::version(&store, Version::Url("/p?a=1&b=2"))
        .await
        .unwrap();
    assert_eq!(format!("{v}\n"), out);

    let out = ok(cli_on(&server, &ns, &["invalidate", "prefix", "v2"]));
    let shown = ok(cli_on(&server, &ns, &["version", "--prefix", "v2"]));
    assert_eq!(shown, out);

    // A tag with no pages: nothing deleted.
    assert_eq!(
        ok(cli_on(&server, &ns, &["invalidate", "tag", "none"])),
        "0\n"
    );

    // --json: one object per name.
    let out = ok(cli_on(
        &server,
        &ns,
        &["--json", "invalidate", "group", "a", "b"],
    ));
    let objects: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON"))
        .collect();
    assert_eq!(objects.len(), 2);
    assert_eq!(objects[1]["kind"], "group");
    assert_eq!(objects[1]["name"], "b");
    assert!(objects[1]["version"].as_u64().is_some());
}

#[tokio::test]
async fn count_and_list_see_what_a_redis_store_wrote() {
    let server = RedisServer::start();
    let ns = unique_namespace("cli-scan");
    let cache = patient_cache(store(&server, &ns));
    // Another namespace on the same server, never counted.
    let other = patient_cache(store(&server, &unique_namespace("cli-scan-other")));
    other.invalidate_group("views").await.unwrap();

    cache.invalidate_group("views").await.unwrap();
    cache.invalidate_group("catalogue").await.unwrap();
    cache.invalidate_path("/a").await.unwrap();
    cache.invalidate_url("/a?x=1").await.unwrap();
    cache.invalidate_prefix("p").await.unwrap();
    fetch(&app(&cache), "/items").await;

    // The page, and the versions of its path and URL that the lookup seeded.
    let page = format!(
        "{ns}:page:{}",
        hash_key(
            "p",
            &[("views", cache.group_version("views").await.unwrap())],
            "/items"
        )
    );
    let mut expected = vec![
        format!("{ns}:group:catalogue"),
        format!("{ns}:group:views"),
        page.clone(),
        format!("{ns}:path:/a"),
        format!("{ns}:path:/items"),
        format!("{ns}:prefix:p"),
        format!("{ns}:url:/a?x=1"),
        format!("{ns}:url:/items"),
    ];
    expected.sort();

    assert_eq!(ok(cli_on(&server, &ns, &["count"])), "8\n");
    assert_eq!(
        ok(cli_on(&server, &ns, &["count", "--kind", "group"])),
        "2\n"
    );
    assert_eq!(
        ok(cli_on(&server, &ns, &["count", "--kind", "page,prefix"])),
        "2\n"
    );
    assert_eq!(
        ok(cli_on(&server, &ns, &["count", "--by-kind"])),
        "page\t1\ngroup\t2\npath\t2\nurl\t2\nprefix\t1\ntag\t0\nlock\t0\nsoft\t0\nother\t0\ntotal\t8\n"
    );
    assert_eq!(
        ok(cli_on(
            &server,
            &ns,
            &["--json", "count", "--by-kind", "--kind", "url"]
        )),
        "{\"total\":2,\"url\":2}\n"
    );

    // list: every key with its TTL, `-` for none.
    let out = ok(cli_on(&server, &ns, &["list"]));
    let mut lines: Vec<(&str, &str)> = out
        .lines()
        .map(|l| l.split_once('\t').expect("key<TAB>ttl"))
        .collect();
    lines.sort();
    let keys: Vec<&str> = lines.iter().map(|(k, _)| *k).collect();
    assert_eq!(keys, expected);
    for (key, ttl) in &lines {
        if key.contains(":group:") || key.contains(":prefix:") {
            assert_eq!(*ttl, "-", "{key} has a TTL");
        } else {
            let ttl: u64 = ttl.parse().unwrap_or_else(|_| panic!("{key}: TTL {ttl}"));
            assert!(ttl > 0, "{key}: TTL {ttl}");
        }
    }

    let out = ok(cli_on(&server, &ns, &["list", "--kind", "prefix"]));
    assert!(out.starts_with(&format!("{ns}:prefix:p\t-")), "{out}");
    assert_eq!(
        ok(cli_on(&server, &ns, &["list", "--limit", "2"]))
            .lines()
            .count(),
        2
    );
    let out = ok(cli_on(&server, &ns, &["--json", "list", "--kind", "group"]));
    for line in out.lines() {
        let json: serde_json::Value = serde_json::from_str(line).expect("JSON");
        assert_eq!(json["kind"], "group");
        assert!(json["ttl"].is_null());
    }
}

#[tokio::test]
async fn count_and_list_use_scan_never_keys() {
    let Some(server) = RedisServer::start_private("count_and_list_use_scan_never_keys") else {
        return;
    };
    let ns = unique_namespace("cli-many");
    // More keys than one SCAN step.
    let mut conn = server.cli().await;
    let mut pipe = cache_page_runtime::redis::pipe();
    for i in 0..2500 {
        pipe.cmd("SET")
            .arg(format!("{ns}:page:{i:032x}"))
            .arg("x")
            .arg("EX")
            .arg(600)
            .ignore();
    }
    let mut raw = server
        .client()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let () = pipe.query_async(&mut raw).await.unwrap();

    assert_eq!(ok(cli_on(&server, &ns, &["count"])), "2500\n");
    assert_eq!(ok(cli_on(&server, &ns, &["list"])).lines().count(), 2500);
    let calls = conn.command_calls().await;
    assert!(calls.get("scan").copied().unwrap_or(0) >= 2, "{calls:?}");
    assert_eq!(calls.get("keys"), None, "KEYS was called: {calls:?}");

    // A reader that stops early (`| head -1`) ends the listing quietly.
    let mut child = Command::new(BIN)
        .args(["--redis-url", server.url(), "--namespace", &ns, "list"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert!(first.starts_with(&format!("{ns}:page:")), "{first}");
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stderr(&out), "");
}

#[test]
fn redis_down_exits_1_with_one_clear_line() {
    let port = free_port();
    let url = format!("redis://127.0.0.1:{port}");
    for args in [
        vec!["invalidate", "group", "views"],
        vec!["version", "views"],
        vec!["key", "/a", "--key", "path", "--group", "views"],
        vec!["count"],
        vec!["list"],
    ] {
        let mut all = vec!["--redis-url", url.as_str()];
        all.extend(args.iter());
        let err = fails(cli(&all), 1);
        assert_eq!(
            err,
            format!("error: cannot reach Redis at {url}: connection refused\n"),
            "{args:?}"
        );
    }
    // The password never shows.
    let err = fails(
        cli(&[
            "--redis-url",
            &format!("redis://app:hunter2@127.0.0.1:{port}/0"),
            "count",
        ]),
        1,
    );
    assert!(!err.contains("hunter2"), "{err}");
    assert!(err.contains("redis://app:***@127.0.0.1"), "{err}");
}

#[tokio::test]
async fn a_frozen_redis_exits_1_after_the_timeout() {
    let Some(server) = RedisServer::start_private("a_frozen_redis_exits_1_after_the_timeout")
    else {
        return;
    };
    server.freeze();
    let started = std::time::Instant::now();
    let out = cli(&["--redis-url", server.url(), "--timeout", "300", "count"]);
    let took = started.elapsed();
    server.resume();
    let err = fails(out, 1);
    assert!(err.contains("no answer within 300 ms"), "{err}");
    assert!(took < Duration::from_secs(5), "took {took:?}");
}

#[test]
fn bad_input_exits_2_before_any_redis_command() {
    // Nothing listens there: a usage error must be found before connecting.
    let nowhere = format!("redis://127.0.0.1:{}", free_port());
    let cases: &[(&[&str], &str)] = &[
        (&["key", "foo"], "expected a path starting with '/'"),
        (&["key", "ftp://h/x"], "is not http or https"),
        (
            &["key", "/a"],
            "the default key (keys::default_key) includes the host",
        ),
        (
            &[
                "key",
                "/a",
                "--key",
                "path",
                "--group",
                "g",
                "--version",
                "g=x",
            ],
            "not a whole number",
        ),
        (
            &[
                "key",
                "/a",
                "--key",
                "path",
                "--group",
                "g",
                "--version",
                "g",
            ],
            "expected GROUP=N",
        ),
        (
            &["key", "/a", "--key", "path", "--version", "g=1"],
            "the page has no group \"g\"",
        ),
        (&["key", "http://h/a", "--host", "h"], "not both"),
        (
            &["key", "/a", "--key", "path", "--param", "page"],
            "--param is for --key params",
        ),
        (&["key", "/a", "--raw-key", "x"], "cannot be used with"),
        (
            &["invalidate", "url", "not a url"],
            "expected a path starting with '/'",
        ),
        (&["invalidate", "path", "/a?b=1"], "use `invalidate url`"),
        (&["invalidate", "prefix", ""], "the prefix is empty"),
        (&["invalidate", "group"], "required"),
        (&["version", "--path", "products"], "expected a path"),
        (&["version", "--url", "--path", "/a"], "cannot be used with"),
        (&["list", "--kind", "pages"], "invalid value 'pages'"),
        (&["list", "--limit", "0"], "invalid value '0'"),
        (
            &["--timeout", "0", "count"],
            "the timeout must be more than 0",
        ),
        (
            &["--timeout", "soon", "count"],
            "expected a number of milliseconds",
        ),
    ];
    for (args, message) in cases {
        let mut all = vec!["--redis-url", nowhere.as_str()];
        all.extend_from_slice(args);
        let err = fails(cli(&all), 2);
        assert!(
            err.contains(message),
            "{args:?}: expected {message:?} in: {err}"
        );
    }
    let err = fails(cli(&["--redis-url", "http://cache:6379", "count"]), 2);
    assert!(err.contains("--redis-url"), "{err}");
}
