//! The soak test of cache-page: a few minutes of mixed traffic on two application
//! instances sharing one Redis, through invalidations, a Redis restart and a Redis
//! freeze, checked for failed requests, stale pages and memory growth.
//!
//! ```sh
//! cargo bench -p cache-page-tests --bench soak                  # 180 s
//! SOAK_SECONDS=60 cargo bench -p cache-page-tests --bench soak  # a shorter run
//! ```
//!
//! What it does:
//!
//! - starts a private `redis-server` on a free port of 127.0.0.1 (the harness's
//!   [`RedisServer`]) and two application instances in this process: two [`Cache`]s on
//!   two [`RedisStore`]s with the same namespace and the production defaults (store
//!   timeout 500 ms, command timeout 250 ms, circuit breaker 3 failures / 2 s), each
//!   serving an axum `Router` on 127.0.0.1:0 with `axum::serve`;
//! - the pages (all cached for [`PAGE_TIMEOUT`] s): `/list?page=N` (group `soak`),
//!   `/item/{id}` (key `path_key`, group `bucket-<id % 16>`), `/vary` (group `soak`,
//!   `Vary: Accept-Language`) and `/private` (`Cache-Control: private`, never stored).
//!   Every body carries the *generation* of each scope that can invalidate it;
//! - [`CONNS`] keep-alive HTTP/1.1 connections spread over both instances send ~80% hot
//!   pages (hits), ~15% random items out of a million (misses), ~5% `/vary` and
//!   `/private`, paced to `SOAK_RPS` requests/s in all (default 2000; 0: unpaced);
//! - every 200 ms one invalidation through one instance, alternating: group `soak`, a
//!   bucket group, or the path of a hot item. The generation is bumped before the call
//!   and published as *done* once it returns `Ok`; a request notes the done generations
//!   of its page before it is sent, and the page it gets must not be older (a *stale*
//!   page);
//! - at 1/3 of the run Redis is killed (`SIGKILL`) for 5 s and restarted empty; at 2/3
//!   it is frozen (`SIGSTOP`) for 3 s and resumed. The time from Redis being back to the
//!   first hit on each instance is the time to resume caching;
//! - samples the process RSS (`VmRSS`, `RssAnon`) and Redis `used_memory` / `DBSIZE`
//!   every 10 s, and counts the namespace's keys by kind at the end;
//! - reports per phase how late the runtime's timers fired, this process's major page
//!   faults and the host's memory stall (PSI), to tell a thrashing host from a fault of
//!   the cache.
//!
//! It prints a markdown summary and exits non-zero if a request failed (transport
//! error, timeout or a status other than 200), a stale or wrong page was served, the
//! uncacheable page was served from the cache, or caching did not resume within
//! [`RESUME_LIMIT`] after a fault. Every process it starts is stopped at the end, on a
//! panic, or on Ctrl-C; all traffic stays on 127.0.0.1.

use std::{
    env, fs, io,
    net::SocketAddr,
    path::PathBuf,
    process::Command,
    sync::{
        Mutex, OnceLock,
        atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering},
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use axum::{
    Extension, Router,
    extract::Path,
    http::{HeaderMap, Uri, header, request::Parts},
    response::{IntoResponse, Response},
    routing::get,
    serve::ListenerExt,
};
use cache_page_runtime::{Cache, RedisStore, cache_page, keys};
use cache_page_tests::{RedisServer, bench::thousands, unique_namespace};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    task::JoinHandle,
};

// ---------------------------------------------------------------------------------
// Settings
// ---------------------------------------------------------------------------------

/// Keep-alive client connections, spread over both instances.
const CONNS: usize = 32;
/// Seconds every page is cached for.
const PAGE_TIMEOUT: u64 = 30;
/// Pages of `/list?page=N` (all hot).
const LIST_PAGES: u64 = 5;
/// Items `0..HOT_ITEMS` are hot, and their paths are invalidated one at a time.
const HOT_ITEMS: u64 = 50;
/// Random items are drawn from `HOT_ITEMS..COLD_ITEMS`.
const COLD_ITEMS: u64 = 1_000_000;
/// Item groups: `bucket-<id % BUCKETS>`.
const BUCKETS: usize = 16;
const LANGUAGES: [&str; 3] = ["en", "fr", "de"];
/// One invalidation this often.
const INVALIDATE_EVERY: Duration = Duration::from_millis(200);
/// How long Redis is down after the kill, and frozen.
const OUTAGE: Duration = Duration::from_secs(5);
const FREEZE: Duration = Duration::from_secs(3);
/// Caching must resume within this after Redis is back.
const RESUME_LIMIT: Duration = Duration::from_secs(10);
/// A request not answered within this counts as failed.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Memory is sampled this often.
const SAMPLE_EVERY: Duration = Duration::from_secs(10);
/// How long the process idles after the load before its RSS is read again.
const IDLE: Duration = Duration::from_secs(6);
/// The end RSS should be within this factor of the RSS after warm-up.
const RSS_GROWTH_LIMIT: f64 = 1.20;

// ---------------------------------------------------------------------------------
// Generations: what a page was rendered from, and what invalidations have returned.
// ---------------------------------------------------------------------------------

/// Scope 0: group `soak`; `1..=BUCKETS`: the bucket groups; then the paths of the hot
/// items.
const SCOPES: usize = 1 + BUCKETS + HOT_ITEMS as usize;
const SOAK_SCOPE: usize = 0;

fn bucket_scope(id: u64) -> usize {
    1 + (id % BUCKETS as u64) as usize
}

fn path_scope(id: u64) -> Option<usize> {
    (id < HOT_ITEMS).then(|| 1 + BUCKETS + id as usize)
}

/// Bumped before each invalidation; rendered into the pages.
static CURRENT: [AtomicU64; SCOPES] = [const { AtomicU64::new(0) }; SCOPES];
/// Published once the invalidation of that generation returned `Ok`.
static DONE: [AtomicU64; SCOPES] = [const { AtomicU64::new(0) }; SCOPES];
static PRIVATE_RUNS: AtomicU64 = AtomicU64::new(0);

fn current(scope: usize) -> u64 {
    CURRENT[scope].load(Ordering::SeqCst)
}

fn done(scope: usize) -> u64 {
    DONE[scope].load(Ordering::SeqCst)
}

// ---------------------------------------------------------------------------------
// The application
// ---------------------------------------------------------------------------------

fn item_id(parts: &Parts) -> u64 {
    parts
        .uri
        .path()
        .rsplit('/')
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

fn bucket_group(parts: &Parts) -> String {
    format!("bucket-{}", item_id(parts) % BUCKETS as u64)
}

fn query_value<'a>(uri: &'a Uri, name: &str) -> &'a str {
    uri.query()
        .unwrap_or("")
        .split('&')
        .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
        .unwrap_or("")
}

#[cache_page(timeout = 30, key = keys::query_params(&["page"]), group = "soak")]
async fn list(uri: Uri) -> String {
    let page = query_value(&uri, "page");
    format!("list page={page} soak={}", current(SOAK_SCOPE))
}

#[cache_page(timeout = 30, key = keys::path_key, group = bucket_group)]
async fn item(Path(id): Path<u64>) -> String {
    let path = path_scope(id).map_or(0, current);
    format!(
        "item id={id} bucket={} path={path}",
        current(bucket_scope(id))
    )
}

#[cache_page(timeout = 30, key = keys::path_key, group = "soak")]
async fn vary(headers: HeaderMap) -> Response {
    let lang = headers
        .get(header::ACCEPT_LANGUAGE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("none")
        .to_owned();
    let body = format!("vary lang={lang} soak={}", current(SOAK_SCOPE));
    ([(header::VARY, "Accept-Language")], body).into_response()
}

#[cache_page(timeout = 30, key = keys::path_key)]
async fn private(uri: Uri) -> Response {
    let run = PRIVATE_RUNS.fetch_add(1, Ordering::Relaxed) + 1;
    let body = format!("private path={} run={run}", uri.path());
    ([(header::CACHE_CONTROL, "private, max-age=30")], body).into_response()
}

fn app(cache: Cache) -> Router {
    Router::new()
        .route("/list", get(list))
        .route("/item/{id}", get(item))
        .route("/vary", get(vary))
        .route("/private", get(private))
        .layer(Extension(cache))
}

/// An application instance: a cache on its own `RedisStore` (own connection, own
/// remembered versions, own flights and breaker), with the production defaults.
fn instance(url: &str, namespace: &str) -> Cache {
    let store = RedisStore::builder(url)
        .namespace(namespace)
        .build()
        .expect("a valid Redis URL");
    Cache::new(store)
}

async fn listen(router: Router) -> io::Result<(SocketAddr, JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    Ok((addr, task))
}

// ---------------------------------------------------------------------------------
// Phases and counters
// ---------------------------------------------------------------------------------

const PHASES: usize = 6;
const PHASE_NAMES: [&str; PHASES] = [
    "warm-up",
    "before faults",
    "Redis down",
    "after restart",
    "Redis frozen",
    "after resume",
];
static PHASE: AtomicUsize = AtomicUsize::new(0);

/// Latency histogram buckets: bucket `i` holds latencies below `2^((i+1)/4)` µs.
const LATENCY_BUCKETS: usize = 112;

struct PhaseStats {
    requests: AtomicU64,
    /// Cacheable requests (not `/private`).
    cacheable: AtomicU64,
    hits: AtomicU64,
    collapsed: AtomicU64,
    stored: AtomicU64,
    /// Served uncached because the store failed, timed out or the breaker was open.
    store_failed: AtomicU64,
    breaker_open: AtomicU64,
    errors: AtomicU64,
    stale: AtomicU64,
    wrong: AtomicU64,
    private_hits: AtomicU64,
    invalidations_ok: AtomicU64,
    invalidations_failed: AtomicU64,
    latency: [AtomicU64; LATENCY_BUCKETS],
    max_latency_us: AtomicU64,
    millis: AtomicU64,
    /// The longest a task sleeping 50 ms on the runtime overslept: the runtime starved
    /// (a loaded host) or blocked.
    runtime_stall_us: AtomicU64,
    /// Time the host had every task stalled on memory during the phase
    /// (`/proc/pressure/memory`, `full`), and this process's major page faults: what
    /// tells a host thrashing from a problem of the cache.
    psi_full_us: AtomicU64,
    major_faults: AtomicU64,
}

impl PhaseStats {
    const fn new() -> PhaseStats {
        PhaseStats {
            requests: AtomicU64::new(0),
            cacheable: AtomicU64::new(0),
            hits: AtomicU64::new(0),
            collapsed: AtomicU64::new(0),
            stored: AtomicU64::new(0),
            store_failed: AtomicU64::new(0),
            breaker_open: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            stale: AtomicU64::new(0),
            wrong: AtomicU64::new(0),
            private_hits: AtomicU64::new(0),
            invalidations_ok: AtomicU64::new(0),
            invalidations_failed: AtomicU64::new(0),
            latency: [const { AtomicU64::new(0) }; LATENCY_BUCKETS],
            max_latency_us: AtomicU64::new(0),
            millis: AtomicU64::new(0),
            runtime_stall_us: AtomicU64::new(0),
            psi_full_us: AtomicU64::new(0),
            major_faults: AtomicU64::new(0),
        }
    }

    fn record_latency(&self, took: Duration) {
        let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX).max(1);
        let bucket = ((us as f64).log2() * 4.0) as usize;
        self.latency[bucket.min(LATENCY_BUCKETS - 1)].fetch_add(1, Ordering::Relaxed);
        self.max_latency_us.fetch_max(us, Ordering::Relaxed);
    }

    fn percentile_ms(&self, p: f64) -> f64 {
        let counts: Vec<u64> = self
            .latency
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect();
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return f64::NAN;
        }
        let wanted = ((total as f64) * p).ceil() as u64;
        let mut seen = 0;
        for (i, n) in counts.iter().enumerate() {
            seen += n;
            if seen >= wanted {
                return 2f64.powf((i + 1) as f64 / 4.0) / 1000.0;
            }
        }
        f64::NAN
    }

    fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }
}

static STATS: [PhaseStats; PHASES] = [const { PhaseStats::new() }; PHASES];

/// The faults: 0 the restart, 1 the freeze.
const FAULTS: usize = 2;
const NOT_YET: u64 = u64::MAX;
/// When Redis was back (µs since the start of the run).
static BACK_AT: [AtomicU64; FAULTS] = [const { AtomicU64::new(NOT_YET) }; FAULTS];
/// When each instance served its first hit after that.
static FIRST_HIT: [[AtomicU64; 2]; FAULTS] =
    [const { [const { AtomicU64::new(NOT_YET) }; 2] }; FAULTS];
/// When an invalidation first returned `Ok` after that.
static FIRST_INVALIDATION: [AtomicU64; FAULTS] = [const { AtomicU64::new(NOT_YET) }; FAULTS];

/// Stored responses per second of the run, to bound the pages Redis should hold.
static STORED_BY_SECOND: Mutex<Vec<u64>> = Mutex::new(Vec::new());

/// The first few problems, as evidence.
static PROBLEMS: Mutex<Vec<String>> = Mutex::new(Vec::new());
static PROBLEM_COUNT: AtomicU64 = AtomicU64::new(0);

fn problem(what: String) {
    let n = PROBLEM_COUNT.fetch_add(1, Ordering::Relaxed);
    if n < 20 {
        eprintln!("PROBLEM: {what}");
        PROBLEMS
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(what);
    }
}

static T0: OnceLock<Instant> = OnceLock::new();

fn since_start() -> Duration {
    T0.get().map_or(Duration::ZERO, Instant::elapsed)
}

fn micros_now() -> u64 {
    u64::try_from(since_start().as_micros()).unwrap_or(NOT_YET - 1)
}

// ---------------------------------------------------------------------------------
// The load client: raw HTTP/1.1 keep-alive
// ---------------------------------------------------------------------------------

/// A small xorshift generator: no dependency, reproducible per connection.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A request and what its page must show.
enum Expect {
    List { page: u64, soak: u64 },
    Item { id: u64, bucket: u64, path: u64 },
    Vary { lang: &'static str, soak: u64 },
    Private,
}

fn choose(rng: &mut Rng) -> (String, Option<&'static str>, bool) {
    let r = rng.below(100);
    if r < 80 {
        let n = rng.below(LIST_PAGES + HOT_ITEMS);
        if n < LIST_PAGES {
            (format!("/list?page={n}"), None, false)
        } else {
            (format!("/item/{}", n - LIST_PAGES), None, false)
        }
    } else if r < 95 {
        let id = HOT_ITEMS + rng.below(COLD_ITEMS - HOT_ITEMS);
        (format!("/item/{id}"), None, false)
    } else if r < 98 {
        let lang = LANGUAGES[rng.below(LANGUAGES.len() as u64) as usize];
        ("/vary".to_owned(), Some(lang), false)
    } else {
        ("/private".to_owned(), None, true)
    }
}

/// Notes what the page for `path` must show, from the invalidations done so far. Read
/// just before the request is sent.
fn expect(path: &str, lang: Option<&'static str>) -> Expect {
    if let Some(page) = path.strip_prefix("/list?page=") {
        Expect::List {
            page: page.parse().unwrap_or(0),
            soak: done(SOAK_SCOPE),
        }
    } else if let Some(id) = path.strip_prefix("/item/") {
        let id: u64 = id.parse().unwrap_or(0);
        Expect::Item {
            id,
            bucket: done(bucket_scope(id)),
            path: path_scope(id).map_or(0, done),
        }
    } else if let Some(lang) = lang {
        Expect::Vary {
            lang,
            soak: done(SOAK_SCOPE),
        }
    } else {
        Expect::Private
    }
}

fn field<'a>(body: &'a str, name: &str) -> Option<&'a str> {
    body.split(' ')
        .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
}

fn number(body: &str, name: &str) -> Option<u64> {
    field(body, name)?.parse().ok()
}

/// `Ok(())`, or `Err((stale, why))`.
fn check(expect: &Expect, body: &str) -> Result<(), (bool, String)> {
    let wrong = |why: &str| Err((false, format!("{why}: {body:?}")));
    let at_least = |name: &str, min: u64| -> Result<(), (bool, String)> {
        match number(body, name) {
            Some(n) if n >= min => Ok(()),
            Some(n) => Err((
                true,
                format!("{name} generation {n} served after invalidation {min} returned: {body:?}"),
            )),
            None => Err((false, format!("no {name} generation in {body:?}"))),
        }
    };
    match *expect {
        Expect::List { page, soak } => {
            if number(body, "page") != Some(page) || !body.starts_with("list ") {
                return wrong("another page than /list?page={page}");
            }
            at_least("soak", soak)
        }
        Expect::Item { id, bucket, path } => {
            if number(body, "id") != Some(id) || !body.starts_with("item ") {
                return wrong("another page than the item asked for");
            }
            at_least("bucket", bucket)?;
            at_least("path", path)
        }
        Expect::Vary { lang, soak } => {
            if field(body, "lang") != Some(lang) || !body.starts_with("vary ") {
                return wrong("the variant of another language");
            }
            at_least("soak", soak)
        }
        Expect::Private => {
            if body.starts_with("private ") {
                Ok(())
            } else {
                wrong("another page than /private")
            }
        }
    }
}

struct Reply {
    status: u16,
    cache_status: String,
    body: String,
}

fn find_head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
}

fn header_value<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.split("\r\n").find_map(|line| {
        let (n, v) = line.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// Reads one response framed by `Content-Length` (all the servers here send) from
/// `stream`, `buf` possibly holding its start; leaves what follows in `buf`.
async fn read_response(stream: &mut TcpStream, buf: &mut Vec<u8>) -> io::Result<Reply> {
    let bad = |why: &str| io::Error::new(io::ErrorKind::InvalidData, why.to_owned());
    loop {
        if let Some(end) = find_head_end(buf) {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            let status = head
                .get(9..12)
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| bad("bad status line"))?;
            let len: usize = header_value(&head, "content-length")
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| bad("no Content-Length"))?;
            while buf.len() < end + len {
                if stream.read_buf(buf).await? == 0 {
                    return Err(io::ErrorKind::UnexpectedEof.into());
                }
            }
            let body = String::from_utf8_lossy(&buf[end..end + len]).into_owned();
            buf.drain(..end + len);
            return Ok(Reply {
                status,
                cache_status: header_value(&head, "cache-status").unwrap_or("").to_owned(),
                body,
            });
        }
        if stream.read_buf(buf).await? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
    }
}

/// How the cache answered, from `Cache-Status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Served {
    Hit,
    Collapsed,
    Stored,
    /// The store failed or timed out (lookup or insert).
    StoreFailed,
    /// The circuit breaker was open.
    BreakerOpen,
    /// Not stored by policy (the private page).
    NotStored,
}

fn served(cache_status: &str) -> Served {
    let params: Vec<&str> = cache_status.split(';').map(str::trim).collect();
    let has = |p: &str| params.contains(&p);
    if has("hit") {
        Served::Hit
    } else if has("collapsed") {
        Served::Collapsed
    } else if has("stored") {
        Served::Stored
    } else if has("detail=store-unavailable") {
        Served::BreakerOpen
    } else if has("detail=store-error") {
        Served::StoreFailed
    } else if params.iter().any(|p| p.starts_with("detail=")) {
        Served::NotStored
    } else {
        // `fwd=uri-miss` alone: the handler ran and the store write failed.
        Served::StoreFailed
    }
}

fn record_stored() {
    let second = since_start().as_secs() as usize;
    let mut by_second = STORED_BY_SECOND.lock().unwrap_or_else(|e| e.into_inner());
    if by_second.len() <= second {
        by_second.resize(second + 1, 0);
    }
    by_second[second] += 1;
}

/// One keep-alive connection to instance `instance` sending requests until `end`,
/// paced to one every `interval` if given.
async fn connection(
    conn: usize,
    addr: SocketAddr,
    instance: usize,
    end: Instant,
    interval: Option<Duration>,
) {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ ((conn as u64 + 1) * 0x2545_F491_4F6C_DD1D));
    let mut stream: Option<TcpStream> = None;
    let mut buf = Vec::with_capacity(8192);
    let mut request = String::with_capacity(256);
    let mut ticker = interval.map(|every| {
        let mut t = tokio::time::interval(every);
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        t
    });
    while Instant::now() < end {
        if let Some(t) = ticker.as_mut() {
            t.tick().await;
        }
        let (path, lang, is_private) = choose(&mut rng);
        let phase = PHASE.load(Ordering::SeqCst);
        let stats = &STATS[phase];
        let expect = expect(&path, lang);
        request.clear();
        request.push_str("GET ");
        request.push_str(&path);
        request.push_str(" HTTP/1.1\r\nHost: 127.0.0.1\r\n");
        if let Some(lang) = lang {
            request.push_str("Accept-Language: ");
            request.push_str(lang);
            request.push_str("\r\n");
        }
        request.push_str("\r\n");
        let started = Instant::now();
        let result = tokio::time::timeout(REQUEST_TIMEOUT, async {
            if stream.is_none() {
                let s = TcpStream::connect(addr).await?;
                let _ = s.set_nodelay(true);
                buf.clear();
                stream = Some(s);
            }
            let s = stream.as_mut().expect("connected");
            s.write_all(request.as_bytes()).await?;
            read_response(s, &mut buf).await
        })
        .await
        .unwrap_or_else(|_| Err(io::ErrorKind::TimedOut.into()));
        let took = started.elapsed();
        stats.requests.fetch_add(1, Ordering::Relaxed);
        stats.record_latency(took);
        let reply = match result {
            Ok(reply) => reply,
            Err(err) => {
                stream = None;
                stats.errors.fetch_add(1, Ordering::Relaxed);
                problem(format!(
                    "[{:.1}s, {}] GET {path} on instance {instance} failed after {took:?}: {err}",
                    since_start().as_secs_f64(),
                    PHASE_NAMES[phase]
                ));
                continue;
            }
        };
        if reply.status != 200 {
            stats.errors.fetch_add(1, Ordering::Relaxed);
            problem(format!(
                "[{:.1}s, {}] GET {path} on instance {instance}: status {} ({}) {:?}",
                since_start().as_secs_f64(),
                PHASE_NAMES[phase],
                reply.status,
                reply.cache_status,
                reply.body
            ));
            continue;
        }
        let how = served(&reply.cache_status);
        if let Err((stale, why)) = check(&expect, &reply.body) {
            let counter = if stale { &stats.stale } else { &stats.wrong };
            counter.fetch_add(1, Ordering::Relaxed);
            problem(format!(
                "[{:.1}s, {}] GET {path} on instance {instance} ({}): {why}",
                since_start().as_secs_f64(),
                PHASE_NAMES[phase],
                reply.cache_status
            ));
        }
        if is_private {
            if matches!(how, Served::Hit | Served::Collapsed | Served::Stored) {
                stats.private_hits.fetch_add(1, Ordering::Relaxed);
                problem(format!(
                    "the uncacheable page was served from the cache: {}",
                    reply.cache_status
                ));
            }
            continue;
        }
        stats.cacheable.fetch_add(1, Ordering::Relaxed);
        let counter = match how {
            Served::Hit => &stats.hits,
            Served::Collapsed => &stats.collapsed,
            Served::Stored => &stats.stored,
            Served::StoreFailed => &stats.store_failed,
            Served::BreakerOpen => &stats.breaker_open,
            Served::NotStored => &stats.store_failed,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        if how == Served::Stored {
            record_stored();
        }
        if how == Served::Hit {
            let now = micros_now();
            for fault in 0..FAULTS {
                let back = BACK_AT[fault].load(Ordering::SeqCst);
                if back != NOT_YET && started >= instant_at(back) {
                    FIRST_HIT[fault][instance].fetch_min(now, Ordering::SeqCst);
                }
            }
        }
    }
}

fn instant_at(micros: u64) -> Instant {
    *T0.get().expect("started") + Duration::from_micros(micros)
}

// ---------------------------------------------------------------------------------
// The invalidator and the faults
// ---------------------------------------------------------------------------------

async fn invalidator(caches: [Cache; 2], end: Instant) -> u64 {
    let mut rng = Rng(0xD1B5_4A32_D192_ED03);
    let mut ticker = tokio::time::interval(INVALIDATE_EVERY);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut n = 0u64;
    while Instant::now() < end {
        ticker.tick().await;
        let cache = &caches[(n % 2) as usize];
        let (scope, what) = match n % 3 {
            0 => (SOAK_SCOPE, "group soak".to_owned()),
            1 => {
                let b = rng.below(BUCKETS as u64);
                (bucket_scope(b), format!("group bucket-{b}"))
            }
            _ => {
                let id = rng.below(HOT_ITEMS);
                let scope = path_scope(id).expect("a hot item");
                (scope, format!("path /item/{id}"))
            }
        };
        let generation = CURRENT[scope].fetch_add(1, Ordering::SeqCst) + 1;
        let result = match what.split_once(' ') {
            Some(("group", group)) => cache.invalidate_group(group).await,
            Some((_, path)) => cache.invalidate_path(path).await,
            None => unreachable!("a target"),
        };
        let phase = PHASE.load(Ordering::SeqCst);
        match result {
            Ok(_) => {
                DONE[scope].fetch_max(generation, Ordering::SeqCst);
                STATS[phase]
                    .invalidations_ok
                    .fetch_add(1, Ordering::Relaxed);
                let now = micros_now();
                for fault in 0..FAULTS {
                    if BACK_AT[fault].load(Ordering::SeqCst) <= now {
                        FIRST_INVALIDATION[fault].fetch_min(now, Ordering::SeqCst);
                    }
                }
            }
            Err(err) => {
                STATS[phase]
                    .invalidations_failed
                    .fetch_add(1, Ordering::Relaxed);
                if phase != 2 && phase != 4 {
                    eprintln!(
                        "[{:.1}s, {}] invalidation of {what} failed: {err}",
                        since_start().as_secs_f64(),
                        PHASE_NAMES[phase]
                    );
                }
            }
        }
        n += 1;
    }
    n
}

/// The pid of the running redis-server and its directory, for Ctrl-C.
static REDIS_PID: AtomicU32 = AtomicU32::new(0);
static REDIS_DIR: OnceLock<PathBuf> = OnceLock::new();

fn note_pid(server: &RedisServer) {
    REDIS_PID.store(server.pid().unwrap_or(0), Ordering::SeqCst);
}

fn set_phase(phase: usize) {
    PHASE.store(phase, Ordering::SeqCst);
    PHASE_STARTED.store(micros_now(), Ordering::SeqCst);
    PHASE_FAULTS.store(major_faults(), Ordering::SeqCst);
    eprintln!(
        "[{:.1}s] phase: {}",
        since_start().as_secs_f64(),
        PHASE_NAMES[phase]
    );
}

/// When the current phase started (µs since the start of the run), and this
/// process's major faults then.
static PHASE_STARTED: AtomicU64 = AtomicU64::new(0);
static PHASE_FAULTS: AtomicU64 = AtomicU64::new(0);

/// Records how long the phase that ends lasted.
fn close_phase(phase: usize) {
    let started = PHASE_STARTED.load(Ordering::SeqCst);
    STATS[phase].major_faults.store(
        major_faults().saturating_sub(PHASE_FAULTS.load(Ordering::SeqCst)),
        Ordering::SeqCst,
    );
    STATS[phase]
        .millis
        .store((micros_now() - started) / 1000, Ordering::SeqCst);
}

fn next_phase(phase: usize) {
    close_phase(PHASE.load(Ordering::SeqCst));
    set_phase(phase);
}

async fn blocking(
    server: RedisServer,
    f: impl FnOnce(&mut RedisServer) + Send + 'static,
) -> RedisServer {
    tokio::task::spawn_blocking(move || {
        let mut server = server;
        f(&mut server);
        server
    })
    .await
    .expect("the redis-server control did not panic")
}

/// Kills Redis at 1/3 of the run and restarts it after [`OUTAGE`]; freezes it at 2/3
/// for [`FREEZE`].
async fn faults(mut server: RedisServer, t0: Instant, total: Duration) -> RedisServer {
    tokio::time::sleep_until((t0 + total / 3).into()).await;
    next_phase(2);
    server = blocking(server, RedisServer::stop).await;
    REDIS_PID.store(0, Ordering::SeqCst);
    eprintln!("[{:.1}s] redis-server killed", since_start().as_secs_f64());
    tokio::time::sleep(OUTAGE).await;
    server = blocking(server, RedisServer::restart).await;
    note_pid(&server);
    BACK_AT[0].store(micros_now(), Ordering::SeqCst);
    eprintln!(
        "[{:.1}s] redis-server restarted (pid {})",
        since_start().as_secs_f64(),
        server.pid().unwrap_or(0)
    );
    next_phase(3);

    tokio::time::sleep_until((t0 + total * 2 / 3).into()).await;
    next_phase(4);
    server = blocking(server, |s| s.freeze()).await;
    eprintln!("[{:.1}s] redis-server frozen", since_start().as_secs_f64());
    tokio::time::sleep(FREEZE).await;
    server = blocking(server, |s| s.resume()).await;
    BACK_AT[1].store(micros_now(), Ordering::SeqCst);
    eprintln!("[{:.1}s] redis-server resumed", since_start().as_secs_f64());
    next_phase(5);
    server
}

// ---------------------------------------------------------------------------------
// Stalls: a loaded host (or a blocked runtime) shows as timers firing late
// ---------------------------------------------------------------------------------

const STALL_TICK: Duration = Duration::from_millis(50);

fn record_stall(slept: Duration) {
    let late = slept.saturating_sub(STALL_TICK);
    let us = u64::try_from(late.as_micros()).unwrap_or(u64::MAX);
    STATS[PHASE.load(Ordering::SeqCst)]
        .runtime_stall_us
        .fetch_max(us, Ordering::Relaxed);
}

/// The share of the last 10 s the host had every task stalled on memory (`full
/// avg10` of `/proc/pressure/memory`, 0 to 1); 0 without PSI. (`avg10` rather than
/// `total`, which some virtual machines do not update.)
fn psi_full_avg10() -> f64 {
    fs::read_to_string("/proc/pressure/memory")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("full "))?
                .split_whitespace()
                .find_map(|kv| kv.strip_prefix("avg10="))?
                .parse::<f64>()
                .ok()
        })
        .map_or(0.0, |pct| pct / 100.0)
}

/// This process's major page faults (`majflt` of `/proc/self/stat`).
fn major_faults() -> u64 {
    fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            let (_, rest) = s.rsplit_once(')')?;
            rest.split_whitespace().nth(9)?.parse().ok()
        })
        .unwrap_or(0)
}

/// Sleeps [`STALL_TICK`] at a time on the runtime until `end`; about every second,
/// adds the host's memory stall since the last time (estimated from `avg10`) to the
/// phase.
async fn runtime_stall_watch(end: Instant) {
    let mut psi_read = Instant::now();
    while Instant::now() < end {
        let before = Instant::now();
        tokio::time::sleep(STALL_TICK).await;
        record_stall(before.elapsed());
        let since = psi_read.elapsed();
        if since >= Duration::from_secs(1) {
            psi_read = Instant::now();
            let stalled = since.as_secs_f64() * psi_full_avg10() * 1e6;
            STATS[PHASE.load(Ordering::SeqCst)]
                .psi_full_us
                .fetch_add(stalled as u64, Ordering::Relaxed);
        }
    }
}

// ---------------------------------------------------------------------------------
// Memory
// ---------------------------------------------------------------------------------

/// A field of `/proc/self/status` in KiB (`VmRSS`, `RssAnon`).
fn status_kib(field: &str) -> u64 {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// The resident set of this process (KiB).
fn rss_kib() -> u64 {
    status_kib("VmRSS")
}

/// Its anonymous part (heap, stacks), which file-page reclaim does not shrink (KiB).
fn anon_kib() -> u64 {
    status_kib("RssAnon")
}

#[derive(Debug, Clone, Default)]
struct RedisMemory {
    used_memory: u64,
    dbsize: u64,
}

/// Redis `used_memory` and `DBSIZE`, or `None` if it does not answer within a second
/// (down or frozen).
async fn redis_memory(client: &redis::Client) -> Option<RedisMemory> {
    let work = async {
        let mut conn = client.get_multiplexed_async_connection().await.ok()?;
        let info: String = redis::cmd("INFO")
            .arg("memory")
            .query_async(&mut conn)
            .await
            .ok()?;
        let dbsize: u64 = redis::cmd("DBSIZE").query_async(&mut conn).await.ok()?;
        let used_memory = info
            .lines()
            .find_map(|l| l.trim().strip_prefix("used_memory:"))
            .and_then(|v| v.parse().ok())?;
        Some(RedisMemory {
            used_memory,
            dbsize,
        })
    };
    tokio::time::timeout(Duration::from_secs(1), work)
        .await
        .ok()
        .flatten()
}

/// The server's `redis_version`.
async fn redis_version(client: &redis::Client) -> String {
    let work = async {
        let mut conn = client.get_multiplexed_async_connection().await.ok()?;
        let info: String = redis::cmd("INFO")
            .arg("server")
            .query_async(&mut conn)
            .await
            .ok()?;
        info.lines()
            .find_map(|l| l.trim().strip_prefix("redis_version:"))
            .map(str::to_owned)
    };
    tokio::time::timeout(Duration::from_secs(5), work)
        .await
        .ok()
        .flatten()
        .unwrap_or_else(|| "?".to_owned())
}

/// Keys of the namespace by kind (`page`, `path`, `url`, `group`…), by `SCAN`: how
/// many, and the TTL left on one of them (-1: none).
async fn keys_by_kind(client: &redis::Client, namespace: &str) -> Vec<(String, u64, i64)> {
    let work = async {
        let mut conn = client.get_multiplexed_async_connection().await.ok()?;
        let mut counts: std::collections::BTreeMap<String, (u64, String)> = Default::default();
        let mut cursor = 0u64;
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(format!("{namespace}:*"))
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut conn)
                .await
                .ok()?;
            for key in keys {
                let kind = key[namespace.len() + 1..]
                    .split(':')
                    .next()
                    .unwrap_or("")
                    .to_owned();
                counts.entry(kind).or_insert((0, key)).0 += 1;
            }
            if next == 0 {
                let mut out = Vec::new();
                for (kind, (n, one)) in counts {
                    let ttl: i64 = redis::cmd("TTL")
                        .arg(&one)
                        .query_async(&mut conn)
                        .await
                        .ok()?;
                    out.push((kind, n, ttl));
                }
                return Some(out);
            }
            cursor = next;
        }
    };
    tokio::time::timeout(Duration::from_secs(30), work)
        .await
        .ok()
        .flatten()
        .unwrap_or_default()
}

#[derive(Debug, Clone)]
struct Sample {
    at: Duration,
    phase: usize,
    rss_kib: u64,
    anon_kib: u64,
    redis: Option<RedisMemory>,
}

async fn sampler(client: redis::Client, from: Instant, end: Instant) -> Vec<Sample> {
    let mut samples = Vec::new();
    let mut next = from;
    while next < end {
        tokio::time::sleep_until(next.into()).await;
        let sample = Sample {
            at: since_start(),
            phase: PHASE.load(Ordering::SeqCst),
            rss_kib: rss_kib(),
            anon_kib: anon_kib(),
            redis: redis_memory(&client).await,
        };
        eprintln!(
            "[{:.1}s] sample: RSS {:.1} MiB (anon {:.1} MiB), Redis {}",
            sample.at.as_secs_f64(),
            sample.rss_kib as f64 / 1024.0,
            sample.anon_kib as f64 / 1024.0,
            sample
                .redis
                .as_ref()
                .map_or("not answering".to_owned(), |r| format!(
                    "used_memory {:.1} MiB, {} keys",
                    r.used_memory as f64 / 1048576.0,
                    r.dbsize
                ))
        );
        samples.push(sample);
        next += SAMPLE_EVERY;
    }
    samples
}

// ---------------------------------------------------------------------------------
// The report
// ---------------------------------------------------------------------------------

fn pct(part: u64, whole: u64) -> String {
    if whole == 0 {
        "–".to_owned()
    } else {
        format!("{:.1}%", part as f64 * 100.0 / whole as f64)
    }
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

fn date() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let days = (secs / 86400) as i64;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    let rem = secs % 86400;
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02} UTC",
        rem / 3600,
        (rem % 3600) / 60
    )
}

fn resume_text(fault: usize) -> (String, bool) {
    let back = BACK_AT[fault].load(Ordering::SeqCst);
    if back == NOT_YET {
        return ("fault not reached".to_owned(), false);
    }
    let mut worst = Duration::ZERO;
    let mut parts = Vec::new();
    let mut ok = true;
    for (instance, first) in FIRST_HIT[fault].iter().enumerate() {
        let first = first.load(Ordering::SeqCst);
        if first == NOT_YET {
            parts.push(format!("instance {}: never", instance + 1));
            ok = false;
        } else {
            let took = Duration::from_micros(first - back);
            worst = worst.max(took);
            parts.push(format!(
                "instance {}: {:.2} s",
                instance + 1,
                took.as_secs_f64()
            ));
        }
    }
    ok &= worst <= RESUME_LIMIT;
    let inv = FIRST_INVALIDATION[fault].load(Ordering::SeqCst);
    if inv != NOT_YET {
        parts.push(format!(
            "first invalidation Ok after {:.2} s",
            Duration::from_micros(inv - back).as_secs_f64()
        ));
    }
    (parts.join(", "), ok)
}

struct Report {
    machine: String,
    seconds: u64,
    rps: u64,
    run_time: Duration,
    invalidations: u64,
    rss_baseline: u64,
    rss_warm: u64,
    rss_end: u64,
    anon_warm: u64,
    anon_end: u64,
    rss_after_idle: u64,
    samples: Vec<Sample>,
    redis_warm: Option<RedisMemory>,
    redis_end: Option<RedisMemory>,
    keys: Vec<(String, u64, i64)>,
    stored_recent: u64,
}

fn print_report(r: &Report) -> bool {
    let total = |f: fn(&PhaseStats) -> &AtomicU64| -> u64 {
        STATS.iter().map(|s| PhaseStats::get(f(s))).sum()
    };
    let requests = total(|s| &s.requests);
    let errors = total(|s| &s.errors);
    let stale = total(|s| &s.stale);
    let wrong = total(|s| &s.wrong);
    let private_hits = total(|s| &s.private_hits);
    let (restart_text, restart_ok) = resume_text(0);
    let (freeze_text, freeze_ok) = resume_text(1);
    let rss_max = r
        .samples
        .iter()
        .map(|s| s.rss_kib)
        .chain([r.rss_warm, r.rss_end])
        .max()
        .unwrap_or(0);
    let growth = r.rss_end as f64 / r.rss_warm.max(1) as f64;
    let anon_growth = r.anon_end as f64 / r.anon_warm.max(1) as f64;
    let host_stall_ms: u64 = STATS
        .iter()
        .map(|s| PhaseStats::get(&s.psi_full_us) / 1000)
        .sum();
    let pass = |ok: bool| if ok { "PASS" } else { "FAIL" };

    println!();
    println!("## Soak: {} s, {}", r.seconds, date());
    println!();
    println!("Machine: {}", r.machine);
    println!(
        "Load: {CONNS} keep-alive connections over 2 instances, paced to {} req/s in all; \
         one invalidation every {} ms ({} in all); Redis killed for {} s at 1/3, frozen \
         for {} s at 2/3. Run time {:.1} s.",
        if r.rps == 0 {
            "unpaced".to_owned()
        } else {
            r.rps.to_string()
        },
        INVALIDATE_EVERY.as_millis(),
        r.invalidations,
        OUTAGE.as_secs(),
        FREEZE.as_secs(),
        r.run_time.as_secs_f64(),
    );
    println!();
    println!("| check | result | verdict |");
    println!("|---|---|---|");
    println!(
        "| requests served | {} ({:.0} req/s) | |",
        thousands(requests),
        requests as f64 / r.run_time.as_secs_f64()
    );
    println!(
        "| failed requests (transport error, timeout, status ≠ 200) | {errors} | {} |",
        pass(errors == 0)
    );
    println!(
        "| stale pages after invalidation | {stale} | {} |",
        pass(stale == 0)
    );
    println!(
        "| wrong pages (another item, page or language) | {wrong} | {} |",
        pass(wrong == 0)
    );
    println!(
        "| uncacheable page served from the cache | {private_hits} | {} |",
        pass(private_hits == 0)
    );
    println!(
        "| caching resumed after the restart | {restart_text} | {} |",
        pass(restart_ok)
    );
    println!(
        "| caching resumed after the freeze | {freeze_text} | {} |",
        pass(freeze_ok)
    );
    println!(
        "| process RSS (VmRSS): baseline / after warm-up / max / end | {} / {} / {} / {} \
         ({:+.1}% from warm-up; {} after {} s idle); anonymous part (RssAnon) {} → {} \
         ({:+.1}%) | {} |",
        mib(r.rss_baseline),
        mib(r.rss_warm),
        mib(rss_max),
        mib(r.rss_end),
        (growth - 1.0) * 100.0,
        mib(r.rss_after_idle),
        IDLE.as_secs(),
        mib(r.anon_warm),
        mib(r.anon_end),
        (anon_growth - 1.0) * 100.0,
        if growth <= RSS_GROWTH_LIMIT && anon_growth <= RSS_GROWTH_LIMIT {
            "within +20%"
        } else {
            "above +20%"
        }
    );
    println!(
        "| host memory stall during the run (PSI `full`, estimated from `avg10`) | {} ms | {} |",
        thousands(host_stall_ms),
        if host_stall_ms > 1000 {
            "host under memory pressure: timeouts may be the host's"
        } else {
            "quiet host"
        }
    );
    let redis = |m: &Option<RedisMemory>| {
        m.as_ref().map_or("not answering".to_owned(), |m| {
            format!(
                "{:.1} MiB, {} keys",
                m.used_memory as f64 / 1048576.0,
                thousands(m.dbsize)
            )
        })
    };
    println!(
        "| Redis used_memory, DBSIZE: after warm-up / end | {} / {} | |",
        redis(&r.redis_warm),
        redis(&r.redis_end)
    );
    let keys: Vec<String> = r
        .keys
        .iter()
        .map(|(kind, n, ttl)| {
            let ttl = match *ttl {
                -1 => "no TTL".to_owned(),
                t if t >= 86400 => format!("TTL {:.1} d", t as f64 / 86400.0),
                t => format!("TTL {t} s"),
            };
            format!("{kind} {} ({ttl})", thousands(*n))
        })
        .collect();
    println!(
        "| keys at the end, by kind (TTL left on one) | {}; pages stored in the last {} s: {} | |",
        keys.join(", "),
        PAGE_TIMEOUT + 1,
        thousands(r.stored_recent)
    );
    println!();
    println!(
        "| phase | s | requests | p50 ms | p99 ms | max ms | hit | collapsed | miss (stored) | \
         uncached: store failed | uncached: breaker open | invalidations ok / failed | \
         runtime late ms | host memory stall ms (PSI, est.) | major faults |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for (i, s) in STATS.iter().enumerate() {
        let g = PhaseStats::get;
        let cacheable = g(&s.cacheable);
        println!(
            "| {} | {:.1} | {} | {:.2} | {:.1} | {:.1} | {} | {} | {} | {} | {} | {} / {} | {} | {} | {} |",
            PHASE_NAMES[i],
            g(&s.millis) as f64 / 1000.0,
            thousands(g(&s.requests)),
            s.percentile_ms(0.50),
            s.percentile_ms(0.99),
            g(&s.max_latency_us) as f64 / 1000.0,
            pct(g(&s.hits), cacheable),
            pct(g(&s.collapsed), cacheable),
            pct(g(&s.stored), cacheable),
            pct(g(&s.store_failed), cacheable),
            pct(g(&s.breaker_open), cacheable),
            g(&s.invalidations_ok),
            g(&s.invalidations_failed),
            g(&s.runtime_stall_us) / 1000,
            g(&s.psi_full_us) / 1000,
            g(&s.major_faults),
        );
    }
    println!();
    println!("| at | phase | RSS | of which anon | Redis used_memory | Redis keys |");
    println!("|---|---|---|---|---|---|");
    for s in &r.samples {
        println!(
            "| {:.0} s | {} | {} | {} | {} | {} |",
            s.at.as_secs_f64(),
            PHASE_NAMES[s.phase],
            mib(s.rss_kib),
            mib(s.anon_kib),
            s.redis.as_ref().map_or("–".to_owned(), |m| format!(
                "{:.1} MiB",
                m.used_memory as f64 / 1048576.0
            )),
            s.redis
                .as_ref()
                .map_or("–".to_owned(), |m| thousands(m.dbsize)),
        );
    }
    let problems = PROBLEMS.lock().unwrap_or_else(|e| e.into_inner());
    if !problems.is_empty() {
        println!();
        println!(
            "Problems ({} in all, the first {}):",
            PROBLEM_COUNT.load(Ordering::Relaxed),
            problems.len()
        );
        for p in problems.iter() {
            println!("- {p}");
        }
    }
    let ok =
        errors == 0 && stale == 0 && wrong == 0 && private_hits == 0 && restart_ok && freeze_ok;
    println!();
    println!("soak: {}", if ok { "PASS" } else { "FAIL" });
    ok
}

// ---------------------------------------------------------------------------------
// main
// ---------------------------------------------------------------------------------

fn env_u64(name: &str, default: u64) -> u64 {
    match env::var(name) {
        Ok(v) if !v.trim().is_empty() => v.trim().parse().unwrap_or_else(|_| {
            eprintln!("{name}={v:?} is not a number");
            std::process::exit(2);
        }),
        _ => default,
    }
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing to run.
    let seconds = env_u64("SOAK_SECONDS", 180).max(40);
    let rps = env_u64("SOAK_RPS", 2000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let ok = rt.block_on(async move {
        tokio::spawn(async {
            let code = cache_page_tests::bench::stop_signal().await;
            let pid = REDIS_PID.load(Ordering::SeqCst);
            if pid != 0 {
                let _ = Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .stderr(std::process::Stdio::null())
                    .status();
            }
            if let Some(dir) = REDIS_DIR.get() {
                let _ = fs::remove_dir_all(dir);
            }
            eprintln!("interrupted; killed redis-server (pid {pid})");
            std::process::exit(i32::from(code));
        });
        run(seconds, rps).await
    });
    drop(rt);
    std::process::exit(if ok { 0 } else { 1 });
}

async fn run(seconds: u64, rps: u64) -> bool {
    let rss_baseline = rss_kib();
    let Some(server) = RedisServer::start_private("soak") else {
        eprintln!("the soak test needs a private redis-server it can kill and freeze");
        return false;
    };
    note_pid(&server);
    if let Some(dir) = server.dir() {
        let _ = REDIS_DIR.set(dir.to_owned());
    }
    eprintln!(
        "redis-server on 127.0.0.1:{} (pid {})",
        server.port(),
        server.pid().unwrap_or(0)
    );
    let client = server.client().clone();
    let redis_version = redis_version(&client).await;
    let machine = format!(
        "{}, redis-server {redis_version}",
        cache_page_tests::bench::machine()
    );
    let namespace = unique_namespace("soak");
    let caches = [
        instance(server.url(), &namespace),
        instance(server.url(), &namespace),
    ];
    let mut servers = Vec::new();
    let mut addrs = Vec::new();
    for cache in &caches {
        let (addr, task) = listen(app(cache.clone()))
            .await
            .expect("listening on 127.0.0.1");
        eprintln!("instance on http://{addr}");
        addrs.push(addr);
        servers.push(task);
    }

    let total = Duration::from_secs(seconds);
    let warmup = Duration::from_secs((seconds / 4).min(10));
    let t0 = Instant::now();
    let _ = T0.set(t0);
    let end = t0 + total;
    set_phase(0);

    let interval = (rps > 0).then(|| Duration::from_secs_f64(CONNS as f64 / rps as f64));
    let clients: Vec<_> = (0..CONNS)
        .map(|conn| {
            let instance = conn % 2;
            tokio::spawn(connection(conn, addrs[instance], instance, end, interval))
        })
        .collect();
    let invalidations = tokio::spawn(invalidator(caches.clone(), end));
    let runtime_watch = tokio::spawn(runtime_stall_watch(end));

    tokio::time::sleep(warmup).await;
    next_phase(1);
    let rss_warm = rss_kib();
    let anon_warm = anon_kib();
    let redis_warm = redis_memory(&client).await;
    let sampling = tokio::spawn(sampler(client.clone(), Instant::now(), end));
    let fault = tokio::spawn(faults(server, t0, total));

    // Every client stops by `end` plus one request timeout.
    let mut hung = 0;
    for c in clients {
        if tokio::time::timeout_at((end + REQUEST_TIMEOUT * 2).into(), c)
            .await
            .is_err()
        {
            hung += 1;
        }
    }
    if hung > 0 {
        problem(format!("{hung} client connections did not stop (a hang)"));
        STATS[PHASE.load(Ordering::SeqCst)]
            .errors
            .fetch_add(hung, Ordering::Relaxed);
    }
    let run_time = t0.elapsed();
    let rss_end = rss_kib();
    let anon_end = anon_kib();
    close_phase(PHASE.load(Ordering::SeqCst));
    let invalidations = invalidations.await.unwrap_or(0);
    let _ = runtime_watch.await;
    let mut samples = sampling.await.unwrap_or_default();
    samples.push(Sample {
        at: since_start(),
        phase: PHASE.load(Ordering::SeqCst),
        rss_kib: rss_end,
        anon_kib: anon_end,
        redis: None,
    });
    let server = fault.await.expect("the fault task did not panic");
    let redis_end = redis_memory(&client).await;
    if let Some(last) = samples.last_mut() {
        last.redis = redis_end.clone();
    }
    let keys = keys_by_kind(&client, &namespace).await;
    let stored_recent = {
        let by_second = STORED_BY_SECOND.lock().unwrap_or_else(|e| e.into_inner());
        let n = by_second.len();
        by_second[n.saturating_sub(PAGE_TIMEOUT as usize + 1)..]
            .iter()
            .sum()
    };
    // The in-process state (flights landed, remembered versions) expires by itself:
    // the RSS once the recently landed flights (kept 5 s) have gone.
    tokio::time::sleep(IDLE).await;
    let rss_after_idle = rss_kib();

    for task in servers {
        task.abort();
    }
    drop(caches);
    drop(server);
    REDIS_PID.store(0, Ordering::SeqCst);
    eprintln!("stopped redis-server");

    print_report(&Report {
        machine,
        seconds,
        rps,
        run_time,
        invalidations,
        rss_baseline,
        rss_warm,
        rss_end,
        anon_warm,
        anon_end,
        rss_after_idle,
        samples,
        redis_warm,
        redis_end,
        keys,
        stored_recent,
    })
}
