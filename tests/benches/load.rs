//! The load benchmark of cache-page: every configuration of the issue side by side, in
//! one run, with the ratios its targets are stated in.
//!
//! ```sh
//! cargo bench -p cache-page-tests --bench load
//! cargo bench -p cache-page-tests --bench load -- --max-pages 100000   # a shorter run
//! ```
//!
//! It starts a private `redis-server` (and `varnishd`, when it is installed) on free
//! ports of 127.0.0.1, serves the same 1 KiB page from axum servers in this process,
//! and loads each of them in turn from a separate process (this binary again, with
//! `--client`) over 64 keep-alive HTTP/1.1 connections. It prints a markdown table for
//! BENCHMARKS.md, with the CPU time per request of each process involved (read from
//! `/proc` over each measured window). Every process it starts is stopped at the end,
//! on a panic, or on Ctrl-C; all traffic stays on 127.0.0.1.
//!
//! Options (after `--`): `--secs N` per measurement (3), `--warmup N` (1), `--rounds N`
//! (5), `--conns N` (64), `--max-pages N` largest group for the invalidation part
//! (1,000,000), `--invalidations N` calls timed per size (200), `--only a,e` to load
//! only some configurations (for profiling; the ratios then miss their operands).

//!
//! The servers run on mimalloc, the way Varnish and Redis run on jemalloc: with the
//! system's malloc (glibc's), a hit that waits for Redis moves between Tokio's worker
//! threads, its memory is freed on another thread than the one that allocated it, and
//! the threads then contend on malloc's arena locks. `--no-default-features` builds the
//! benchmark on the system's allocator instead; BENCHMARKS.md has both.

/// The allocator of this process (servers and load client alike).
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Names the allocator in the report.
const ALLOCATOR: &str = if cfg!(feature = "mimalloc") {
    "mimalloc"
} else {
    "the system's malloc (--no-default-features)"
};

use std::{
    env,
    fmt::Write as _,
    fs, io,
    net::SocketAddr,
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::{
        LazyLock,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use axum::{
    Router,
    extract::State,
    http::{HeaderName, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    routing::get,
    serve::ListenerExt,
};
use bytes::Bytes;
use cache_page_runtime::{
    Cache, MemoryStore, PageKey, RedisStore, Store, Version, cache_page, hash_key,
};
use cache_page_tests::{
    bench::{self, BODY, BODY_KEY, BODY_LEN, bare, body_of, one_get, page},
    on_path,
};
use redis::{
    AsyncCommands,
    aio::{ConnectionManager, ConnectionManagerConfig},
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

// ---------------------------------------------------------------------------------
// Options
// ---------------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct Options {
    secs: f64,
    warmup: f64,
    rounds: usize,
    conns: usize,
    max_pages: u64,
    invalidations: usize,
    /// Only these configurations (ids such as `a,e`); all when empty.
    only: Vec<String>,
}

impl Options {
    fn parse(args: &[String]) -> Options {
        let mut o = Options {
            secs: 3.0,
            warmup: 1.0,
            rounds: 5,
            conns: 64,
            max_pages: 1_000_000,
            invalidations: 200,
            only: Vec::new(),
        };
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            let mut value = || -> f64 {
                it.next()
                    .and_then(|v| v.replace('_', "").parse().ok())
                    .unwrap_or_else(|| {
                        eprintln!("{arg} needs a number");
                        std::process::exit(2);
                    })
            };
            match arg.as_str() {
                "--secs" => o.secs = value().max(0.5),
                "--warmup" => o.warmup = value().max(0.0),
                "--rounds" => o.rounds = (value() as usize).max(1),
                "--conns" => o.conns = (value() as usize).max(1),
                "--max-pages" => o.max_pages = (value() as u64).max(100),
                "--invalidations" => o.invalidations = (value() as usize).max(1),
                "--only" => {
                    o.only = it
                        .next()
                        .map(|v| v.split(',').map(str::to_owned).collect())
                        .unwrap_or_default();
                }
                // `cargo bench` passes `--bench`; a filter may follow it.
                _ => {}
            }
        }
        o
    }
}

// ---------------------------------------------------------------------------------
// Processes this benchmark starts: stopped when their guard drops, which happens at
// the end, on an error, on a panic, and on Ctrl-C or SIGTERM (the run is dropped).
// ---------------------------------------------------------------------------------

fn signal(pid: u32, sig: &str) -> bool {
    Command::new("kill")
        .args([sig, &pid.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A server process (redis-server, varnishd) and its scratch directory: stopped with
/// SIGTERM (SIGKILL after 5 s), reaped, and its directory removed when dropped.
struct Daemon {
    name: &'static str,
    child: Child,
    dir: PathBuf,
}

impl Daemon {
    fn spawn(name: &'static str, cmd: &mut Command, dir: PathBuf) -> io::Result<Daemon> {
        let child = cmd.stdin(Stdio::null()).spawn()?;
        Ok(Daemon { name, child, dir })
    }

    fn exited(&mut self) -> bool {
        !matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let pid = self.child.id();
        if !self.exited() {
            let termed = signal(pid, "-TERM");
            let deadline = Instant::now() + Duration::from_secs(5);
            while termed && Instant::now() < deadline && !self.exited() {
                std::thread::sleep(Duration::from_millis(20));
            }
            if !self.exited() {
                let _ = self.child.kill();
            }
        }
        let _ = self.child.wait();
        let _ = fs::remove_dir_all(&self.dir);
        eprintln!("stopped {} (pid {pid})", self.name);
    }
}

fn scratch_dir(what: &str) -> io::Result<PathBuf> {
    let dir = env::temp_dir().join(format!("cache-page-bench-{}-{what}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir)?;
    Ok(dir)
}

fn free_port() -> io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn redis_answers(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    let mut buf = [0u8; 16];
    s.write_all(b"PING\r\n").is_ok()
        && s.read(&mut buf)
            .is_ok_and(|n| buf[..n].starts_with(b"+PONG"))
}

/// A private redis-server on a free port: no persistence, its files in a scratch dir.
fn start_redis() -> Result<(Daemon, u16), String> {
    let bin = on_path("redis-server").ok_or(
        "redis-server not found on PATH; install it (apt-get install redis-server) and run again",
    )?;
    for _ in 0..10 {
        let port = free_port().map_err(|e| e.to_string())?;
        let dir = scratch_dir(&format!("redis-{port}")).map_err(|e| e.to_string())?;
        let mut cmd = Command::new(&bin);
        cmd.arg("--port")
            .arg(port.to_string())
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(["--daemonize", "no", "--protected-mode", "yes"])
            .arg("--dir")
            .arg(&dir)
            .arg("--logfile")
            .arg(dir.join("redis.log"))
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let mut daemon = Daemon::spawn("redis-server", &mut cmd, dir).map_err(|e| e.to_string())?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline && !daemon.exited() {
            if redis_answers(port) {
                return Ok((daemon, port));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // Another process took the port, or the server failed: try another port.
    }
    Err("redis-server did not start".to_owned())
}

/// Varnish in front of `backend`, caching for an hour; `None` when not installed.
async fn start_varnish(backend: SocketAddr) -> Result<Option<(Daemon, SocketAddr)>, String> {
    let Some(bin) = on_path("varnishd") else {
        println!("varnish: skipped (varnishd not found; apt-get install varnish)");
        return Ok(None);
    };
    for _ in 0..5 {
        let port = free_port().map_err(|e| e.to_string())?;
        let dir = scratch_dir(&format!("varnish-{port}")).map_err(|e| e.to_string())?;
        let log = fs::File::create(dir.join("varnishd.log")).map_err(|e| e.to_string())?;
        let log2 = log.try_clone().map_err(|e| e.to_string())?;
        let mut cmd = Command::new(&bin);
        // -j none: no privilege separation, so it runs as whoever runs the benchmark
        // and can write its scratch directory.
        cmd.args(["-F", "-j", "none", "-t", "3600", "-s", "malloc,256m"])
            .arg("-a")
            .arg(format!("127.0.0.1:{port}"))
            .arg("-b")
            .arg(backend.to_string())
            .arg("-n")
            .arg(&dir)
            .stdout(log)
            .stderr(log2);
        let mut daemon = Daemon::spawn("varnishd", &mut cmd, dir).map_err(|e| e.to_string())?;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline && !daemon.exited() {
            if fetch(addr, "/page").await.is_ok_and(|r| r.status == 200) {
                return Ok(Some((daemon, addr)));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let log = fs::read_to_string(daemon.dir.join("varnishd.log")).unwrap_or_default();
        eprintln!("varnishd did not start on port {port}:\n{log}");
    }
    Err("varnishd did not start".to_owned())
}

// ---------------------------------------------------------------------------------
// The servers: the same page from every configuration.
// ---------------------------------------------------------------------------------

const SMALL_LEN: usize = 100;

static SMALL: LazyLock<Bytes> = LazyLock::new(|| body_of(SMALL_LEN));

/// How many times a cached handler's body ran: 0 during a run of hits, or the cache
/// failed open (a lookup error or timeout) and served uncached.
static HANDLER_RUNS: AtomicU64 = AtomicU64::new(0);

// (a) and (b), the bare handler and the one doing one Redis GET, are `bench::bare`
// and `bench::one_get`.

/// (c) Two sequential GETs: a version, then the entry at that version (the seed's
/// design).
async fn two_gets(State(mut conn): State<ConnectionManager>) -> Response {
    let Ok(version) = conn.get::<_, u64>("bench:version").await else {
        return StatusCode::BAD_GATEWAY.into_response();
    };
    match conn
        .get::<_, Vec<u8>>(format!("bench:body:{version}"))
        .await
    {
        Ok(body) => page(Bytes::from(body)),
        Err(_) => StatusCode::BAD_GATEWAY.into_response(),
    }
}

/// A router serving the bare handler, cached, at `/page`, and a 100-byte page (for the
/// memory measurement) at `/small`, on the store installed under `$store`
/// (`install_named`), as an application with several stores names them. Each cached
/// configuration has its own; (e) uses the default cache instead (`install`), as an
/// application with one store does.
macro_rules! cached_router {
    ($router:ident $(, $store:tt)?) => {
        fn $router() -> Router {
            #[cache_page(timeout = 3600, group = "bench" $(, store = $store)?)]
            async fn page_1k() -> Response {
                HANDLER_RUNS.fetch_add(1, Ordering::Relaxed);
                page(BODY.clone())
            }

            #[cache_page(timeout = 3600, group = "bench" $(, store = $store)?)]
            async fn page_100() -> Response {
                page(SMALL.clone())
            }

            Router::new()
                .route("/page", get(page_1k))
                .route("/small", get(page_100))
        }
    };
}

cached_router!(redis_router, "bench");
cached_router!(get_router, "bench-get");
cached_router!(mget_router, "bench-mget");
cached_router!(lag_router, "bench-lag");
cached_router!(seed_router, "bench-seed");
cached_router!(redis_miss_router, "bench-miss");
cached_router!(memory_router);
cached_router!(memory_shared_router, "bench-memory-shared");
cached_router!(memory_miss_router, "bench-memory-miss");

async fn listen(router: Router) -> io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    Ok(addr)
}

// ---------------------------------------------------------------------------------
// HTTP/1.1 over a raw socket: the load client and one-off requests.
// ---------------------------------------------------------------------------------

/// A response read whole into a buffer: `buf[..total]`, head `buf[..head]`.
struct Framed {
    status: u16,
    head: usize,
    total: usize,
}

// The client reads every response of every configuration, on the cores the servers
// use: its parsing is kept to a few vectorised scans, so that a response with more
// headers (a cache's `Age`, `Cache-Status`, Varnish's `Via`) costs the client little
// more than a bare one, and the ratios measure the servers.

fn find_head_end(buf: &[u8]) -> Option<usize> {
    memchr::memmem::find(buf, b"\r\n\r\n").map(|i| i + 4)
}

/// The `Content-Length` of a response head (no space may come before a header's colon,
/// RFC 9112 §5.1).
fn content_length(head: &[u8]) -> Option<usize> {
    const NAME: &[u8] = b"content-length:";
    memchr::memchr_iter(b'\n', head).find_map(|newline| {
        let line = &head[newline + 1..];
        if !line.get(..NAME.len())?.eq_ignore_ascii_case(NAME) {
            return None;
        }
        let value = line[NAME.len()..].trim_ascii_start();
        let digits = value.iter().take_while(|b| b.is_ascii_digit()).count();
        std::str::from_utf8(&value[..digits]).ok()?.parse().ok()
    })
}

/// Reads one response with a `Content-Length` (all that the servers here send) into
/// `buf`, which may already hold the start of it.
async fn read_response(stream: &mut TcpStream, buf: &mut Vec<u8>) -> io::Result<Framed> {
    loop {
        if let Some(head) = find_head_end(buf) {
            let bad = || io::Error::new(io::ErrorKind::InvalidData, "bad response head");
            let status = std::str::from_utf8(buf.get(9..12).ok_or_else(bad)?)
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or_else(bad)?;
            let total = head + content_length(&buf[..head]).ok_or_else(bad)?;
            while buf.len() < total {
                if stream.read_buf(buf).await? == 0 {
                    return Err(io::ErrorKind::UnexpectedEof.into());
                }
            }
            return Ok(Framed {
                status,
                head,
                total,
            });
        }
        if stream.read_buf(buf).await? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
    }
}

struct Fetched {
    status: u16,
    head: String,
    body_len: usize,
}

/// One GET on a new connection.
async fn fetch(addr: SocketAddr, path: &str) -> io::Result<Fetched> {
    let work = async {
        let mut stream = TcpStream::connect(addr).await?;
        let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n");
        stream.write_all(request.as_bytes()).await?;
        let mut buf = Vec::with_capacity(4096);
        let r = read_response(&mut stream, &mut buf).await?;
        Ok(Fetched {
            status: r.status,
            head: String::from_utf8_lossy(&buf[..r.head]).to_ascii_lowercase(),
            body_len: r.total - r.head,
        })
    };
    tokio::time::timeout(Duration::from_secs(5), work)
        .await
        .unwrap_or_else(|_| Err(io::ErrorKind::TimedOut.into()))
}

/// `--client <addr> <path> <hit|unique> <secs> <warmup> <conns>`: loads `addr` and
/// prints `RESULT requests=.. rps=.. p50_us=.. p99_us=.. errors=..`.
fn client_main(args: &[String]) -> i32 {
    let [addr, path, mode, secs, warmup, conns] = args else {
        eprintln!("usage: --client <addr> <path> <hit|unique> <secs> <warmup> <conns>");
        return 2;
    };
    let (Ok(addr), Ok(secs), Ok(warmup), Ok(conns)) = (
        addr.parse::<SocketAddr>(),
        secs.parse::<f64>(),
        warmup.parse::<f64>(),
        conns.parse::<usize>(),
    ) else {
        eprintln!("--client: bad arguments {args:?}");
        return 2;
    };
    // The parser's own check, on the heads the servers here send.
    let heads: [(&[u8], Option<usize>); 3] = [
        (
            b"HTTP/1.1 200 OK\r\ncontent-length: 1024\r\n\r\n",
            Some(1024),
        ),
        (
            b"HTTP/1.1 200 OK\r\nAge: 3\r\nContent-Length:  17\r\nVia: 1.1 x\r\n\r\n",
            Some(17),
        ),
        (b"HTTP/1.1 200 OK\r\nx-content-length: 5\r\n\r\n", None),
    ];
    for (head, length) in heads {
        assert_eq!(find_head_end(head), Some(head.len()));
        assert_eq!(
            content_length(head),
            length,
            "{}",
            String::from_utf8_lossy(head)
        );
    }
    let unique = mode == "unique";
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    rt.block_on(async move {
        let warm_end = Instant::now() + Duration::from_secs_f64(warmup);
        let end = warm_end + Duration::from_secs_f64(secs);
        // Unique URLs differ across runs too, so that every run's requests miss.
        let nonce = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let tasks: Vec<_> = (0..conns)
            .map(|id| {
                let path = if unique {
                    format!("{path}?u={nonce}-{id}-")
                } else {
                    path.clone()
                };
                tokio::spawn(connection(addr, path, unique, warm_end, end))
            })
            .collect();
        let mut latencies = Vec::new();
        let mut errors = 0;
        let mut sent = 0;
        for task in tasks {
            let (l, e, n) = task.await.expect("a connection task");
            latencies.extend(l);
            errors += e;
            sent += n;
        }
        latencies.sort_unstable();
        let pct = |p: usize| {
            latencies
                .get((latencies.len() * p / 100).min(latencies.len().saturating_sub(1)))
                .copied()
                .unwrap_or(0)
        };
        println!(
            "RESULT requests={} rps={:.1} p50_us={} p99_us={} errors={errors} sent={sent}",
            latencies.len(),
            latencies.len() as f64 / secs,
            pct(50),
            pct(99),
        );
    });
    0
}

/// One keep-alive connection sending requests back to back until `end`; latencies
/// (µs) of the requests started after `warm_end`, how many of those failed, and how
/// many responses were read in all.
async fn connection(
    addr: SocketAddr,
    path: String,
    unique: bool,
    warm_end: Instant,
    end: Instant,
) -> (Vec<u32>, u64, u64) {
    let fixed = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n").into_bytes();
    let mut request = Vec::with_capacity(256);
    let mut latencies = Vec::with_capacity(1 << 16);
    let mut errors = 0u64;
    let mut buf = Vec::with_capacity(1 << 14);
    let mut stream: Option<TcpStream> = None;
    let mut n = 0u64;
    let mut n_ok = 0u64;
    loop {
        let start = Instant::now();
        if start >= end {
            break;
        }
        if stream.is_none() {
            match TcpStream::connect(addr).await {
                Ok(s) => {
                    let _ = s.set_nodelay(true);
                    buf.clear();
                    stream = Some(s);
                }
                Err(_) => {
                    errors += u64::from(start >= warm_end);
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            }
        }
        let Some(s) = stream.as_mut() else {
            continue;
        };
        let bytes: &[u8] = if unique {
            request.clear();
            let _ = write!(
                Bytes2(&mut request),
                "GET {path}{n} HTTP/1.1\r\nHost: {addr}\r\n\r\n"
            );
            &request
        } else {
            &fixed
        };
        n += 1;
        let result = async {
            s.write_all(bytes).await?;
            read_response(s, &mut buf).await
        }
        .await;
        let took = start.elapsed();
        let measured = start >= warm_end;
        match result {
            Ok(r) => {
                buf.drain(..r.total);
                n_ok += 1;
                if measured {
                    if r.status == 200 {
                        latencies.push(u32::try_from(took.as_micros()).unwrap_or(u32::MAX));
                    } else {
                        errors += 1;
                    }
                }
            }
            Err(_) => {
                errors += u64::from(measured);
                stream = None;
            }
        }
    }
    (latencies, errors, n_ok)
}

/// `fmt::Write` into a byte buffer.
struct Bytes2<'a>(&'a mut Vec<u8>);

impl std::fmt::Write for Bytes2<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

// ---------------------------------------------------------------------------------
// Measurements
// ---------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, Default)]
struct Run {
    rps: f64,
    p50: f64,
    p99: f64,
    errors: u64,
    handler_runs: u64,
    /// Redis round trips of the configuration's store per request, if it has one.
    trips: f64,
    /// Where the machine's time went, per request.
    cpu: Cpu,
}

/// Loads `addr` from a separate process (this binary with `--client`).
async fn load(
    config: &Config,
    path: &str,
    secs: f64,
    warmup: f64,
    conns: usize,
) -> Result<Run, String> {
    let (addr, unique) = (config.addr, config.unique);
    let trips_before = config.store.as_ref().map(RedisStore::round_trips);
    let exe = env::current_exe().map_err(|e| e.to_string())?;
    let child = tokio::process::Command::new(exe)
        .arg("--client")
        .arg(addr.to_string())
        .arg(path)
        .arg(if unique { "unique" } else { "hit" })
        .arg(secs.to_string())
        .arg(warmup.to_string())
        .arg(conns.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("starting the load client: {e}"))?;
    let runs_before = HANDLER_RUNS.load(Ordering::Relaxed);
    let limit = Duration::from_secs_f64(secs + warmup + 30.0);
    // The processes' CPU time is read as the client's measured window begins and ends
    // (to within the few milliseconds the client takes to start).
    let client_pid = child.id();
    let window = async {
        tokio::time::sleep(Duration::from_secs_f64(warmup)).await;
        let before = CpuSample::take(client_pid);
        tokio::time::sleep(Duration::from_secs_f64(secs)).await;
        (before, CpuSample::take(client_pid))
    };
    let (output, (cpu_before, cpu_after)) = tokio::join!(
        tokio::time::timeout(limit, child.wait_with_output()),
        window
    );
    let output = output
        .map_err(|_| "the load client did not finish in time".to_owned())?
        .map_err(|e| e.to_string())?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout
        .lines()
        .find(|l| l.starts_with("RESULT "))
        .ok_or_else(|| format!("the load client printed no result: {stdout}"))?;
    let field = |name: &str| -> f64 {
        line.split_whitespace()
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
            .and_then(|v| v.parse().ok())
            .unwrap_or(f64::NAN)
    };
    Ok(Run {
        rps: field("rps"),
        p50: field("p50_us"),
        p99: field("p99_us"),
        errors: field("errors") as u64,
        handler_runs: HANDLER_RUNS.load(Ordering::Relaxed) - runs_before,
        trips: match (&config.store, trips_before) {
            (Some(store), Some(before)) => (store.round_trips() - before) as f64 / field("sent"),
            _ => f64::NAN,
        },
        cpu: Cpu::per_request(&cpu_before, &cpu_after, field("requests"), secs),
    })
}

// ---------------------------------------------------------------------------------
// Where the two cores go: the CPU time of each process in a measured window
// ---------------------------------------------------------------------------------

/// The daemons whose CPU time a run reports, besides this process (the axum servers)
/// and the load client.
#[derive(Debug, Default, Clone, Copy)]
struct DaemonPids {
    redis: Option<u32>,
    varnish: Option<u32>,
}

static DAEMON_PIDS: std::sync::OnceLock<DaemonPids> = std::sync::OnceLock::new();

/// Clock ticks per second of `/proc`'s CPU times.
static CLOCK_TICKS: LazyLock<f64> = LazyLock::new(|| {
    command_output("getconf", &["CLK_TCK"])
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or(100.0)
});

/// The machine's cores (CPUs this process may run on).
static CORES: LazyLock<usize> =
    LazyLock::new(|| std::thread::available_parallelism().map_or(0, |n| n.get()));

/// The fields of a `/proc/<pid>/stat` line from the third (`state`) on. The command
/// name (field 2) is in parentheses and may hold spaces, so they are counted from its
/// closing one.
fn stat_fields(stat: &str) -> Option<std::str::Split<'_, char>> {
    Some(stat.get(stat.rfind(')')? + 2..)?.split(' '))
}

/// The CPU time (user and system, every thread) of process `pid` so far, in clock
/// ticks, from `/proc/<pid>/stat`; `None` off Linux or once it exited.
fn process_ticks(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // `utime` and `stime` are fields 14 and 15.
    let mut fields = stat_fields(&stat)?;
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// `pid` and its children: varnishd's manager process and the cache process it
/// starts, which serves the requests.
fn with_children(pid: u32) -> Vec<u32> {
    let mut pids = vec![pid];
    if let Ok(children) = fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")) {
        pids.extend(
            children
                .split_whitespace()
                .filter_map(|c| c.parse::<u32>().ok()),
        );
        return pids;
    }
    // A kernel without that file: every process whose parent (field 4) is `pid`.
    let parent_of = |stat: &str| -> Option<u32> { stat_fields(stat)?.nth(1)?.parse().ok() };
    let Ok(entries) = fs::read_dir("/proc") else {
        return pids;
    };
    for entry in entries.flatten() {
        let Some(child) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let stat = fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        if parent_of(&stat) == Some(pid) {
            pids.push(child);
        }
    }
    pids
}

/// The busy time of every CPU of the machine so far, in clock ticks (`/proc/stat`:
/// user, nice, system, irq, softirq, steal).
fn machine_ticks() -> Option<u64> {
    let stat = fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?.strip_prefix("cpu ")?;
    let f: Vec<u64> = line
        .split_whitespace()
        .map(|v| v.parse().ok())
        .collect::<Option<_>>()?;
    // user nice system idle iowait irq softirq steal
    Some(f.first()? + f.get(1)? + f.get(2)? + f.get(5)? + f.get(6)? + f.get(7)?)
}

/// The CPU time so far of the processes a run involves, in clock ticks.
#[derive(Debug, Clone, Copy)]
struct CpuSample {
    server: Option<u64>,
    client: Option<u64>,
    redis: Option<u64>,
    varnish: Option<u64>,
    machine: Option<u64>,
}

impl CpuSample {
    fn take(client: Option<u32>) -> CpuSample {
        let daemons = DAEMON_PIDS.get().copied().unwrap_or_default();
        CpuSample {
            server: process_ticks(std::process::id()),
            client: client.and_then(process_ticks),
            redis: daemons.redis.and_then(process_ticks),
            varnish: daemons.varnish.and_then(|pid| {
                with_children(pid)
                    .into_iter()
                    .map(process_ticks)
                    .sum::<Option<u64>>()
            }),
            machine: machine_ticks(),
        }
    }
}

/// CPU microseconds per request of each process over a measured window (NaN where
/// it could not be read).
#[derive(Debug, Clone, Copy)]
struct Cpu {
    server: f64,
    client: f64,
    redis: f64,
    varnish: f64,
    /// Every CPU's busy time, whatever ran: these, the kernel's interrupt work, and
    /// anything else on the machine.
    machine: f64,
    /// `machine` less the processes above.
    elsewhere: f64,
    /// The time no CPU was busy.
    idle: f64,
}

impl Default for Cpu {
    fn default() -> Self {
        Cpu {
            server: f64::NAN,
            client: f64::NAN,
            redis: f64::NAN,
            varnish: f64::NAN,
            machine: f64::NAN,
            elsewhere: f64::NAN,
            idle: f64::NAN,
        }
    }
}

impl Cpu {
    /// Over a window of `secs` in which `requests` were served.
    fn per_request(before: &CpuSample, after: &CpuSample, requests: f64, secs: f64) -> Cpu {
        let per = |b: Option<u64>, a: Option<u64>| match (b, a) {
            (Some(b), Some(a)) if requests > 0.0 => {
                a.saturating_sub(b) as f64 / *CLOCK_TICKS * 1e6 / requests
            }
            _ => f64::NAN,
        };
        let server = per(before.server, after.server);
        let client = per(before.client, after.client);
        let redis = per(before.redis, after.redis);
        let varnish = per(before.varnish, after.varnish);
        let machine = per(before.machine, after.machine);
        let known: f64 = [server, client, redis, varnish]
            .iter()
            .filter(|v| !v.is_nan())
            .sum();
        Cpu {
            server,
            client,
            redis,
            varnish,
            machine,
            elsewhere: machine - known,
            // Unknown (0) cores leave the idle time unknown.
            idle: match *CORES {
                0 => f64::NAN,
                cores => cores as f64 * secs * 1e6 / requests - machine,
            },
        }
    }
}

/// The headers a hit of (e) carries besides the page's `Content-Type`, as static values.
const HIT_HEADERS: [(HeaderName, HeaderValue); 5] = [
    (
        HeaderName::from_static("cache-control"),
        HeaderValue::from_static("max-age=3600"),
    ),
    (
        HeaderName::from_static("expires"),
        HeaderValue::from_static("Sat, 21 Nov 2026 18:00:00 GMT"),
    ),
    (
        HeaderName::from_static("etag"),
        HeaderValue::from_static("\"8d95c12f75be8d60038fa5c9fe482e0c\""),
    ),
    (
        HeaderName::from_static("age"),
        HeaderValue::from_static("12"),
    ),
    (
        HeaderName::from_static("cache-status"),
        HeaderValue::from_static("cache-page; hit; ttl=3588"),
    ),
];

/// The bare handler's page with [`HIT_HEADERS`]: beside (e), it tells the cache's own
/// work from the cost of sending (and, for the client, reading) a hit's longer head.
async fn bare_with_hit_headers() -> Response {
    let mut response = page(BODY.clone());
    let headers = response.headers_mut();
    headers.reserve(HIT_HEADERS.len());
    for (name, value) in HIT_HEADERS {
        headers.insert(name, value);
    }
    response
}

struct Config {
    id: &'static str,
    label: &'static str,
    addr: SocketAddr,
    unique: bool,
    /// The configuration's `RedisStore`, whose round trips are counted.
    store: Option<RedisStore>,
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// The median run of several rounds: median req/s, median p50 and p99.
#[derive(Debug, Clone, Default)]
struct Summary {
    rps: f64,
    p50: f64,
    p99: f64,
    rounds: Vec<f64>,
    errors: u64,
    handler_runs: u64,
    trips: f64,
    /// The median of each process's CPU time per request over the rounds.
    cpu: Cpu,
}

fn summarize(runs: &[Run]) -> Summary {
    let cpu = |f: fn(&Cpu) -> f64| {
        median(
            runs.iter()
                .map(|r| f(&r.cpu))
                .filter(|v| !v.is_nan())
                .collect(),
        )
    };
    Summary {
        rps: median(runs.iter().map(|r| r.rps).collect()),
        p50: median(runs.iter().map(|r| r.p50).collect()),
        p99: median(runs.iter().map(|r| r.p99).collect()),
        rounds: runs.iter().map(|r| r.rps).collect(),
        errors: runs.iter().map(|r| r.errors).sum(),
        handler_runs: runs.iter().map(|r| r.handler_runs).sum(),
        trips: median(runs.iter().map(|r| r.trips).collect()),
        cpu: Cpu {
            server: cpu(|c| c.server),
            client: cpu(|c| c.client),
            redis: cpu(|c| c.redis),
            varnish: cpu(|c| c.varnish),
            machine: cpu(|c| c.machine),
            elsewhere: cpu(|c| c.elsewhere),
            idle: cpu(|c| c.idle),
        },
    }
}

/// The order in which a round measures the configurations: each targeted ratio's two
/// (e/a, d/b, d/f) next to each other, and most others one apart. A ratio taken within
/// a round compares two measurements a few seconds apart, not half a minute, so the
/// host's drift moves it less. Configurations not listed come last, as given.
const MEASURING_ORDER: [&str; 15] = [
    "c", "d2", "d1", "d0", "d3", "b", "d", "f", "e", "a", "h", "e0", "d′", "a′", "e′",
];

/// Runs every configuration once per round, interleaved in [`MEASURING_ORDER`], and
/// every other round in reverse order: a machine that slows down (or speeds up)
/// through the run then moves the configurations compared by a ratio both ways,
/// instead of always favouring the one measured first.
async fn measure(
    configs: &[Config],
    rounds: usize,
    secs: f64,
    warmup: f64,
    conns: usize,
) -> Result<Vec<Summary>, String> {
    let mut runs: Vec<Vec<Run>> = vec![Vec::new(); configs.len()];
    for round in 1..=rounds {
        let mut order: Vec<(&Config, &mut Vec<Run>)> = configs.iter().zip(&mut runs).collect();
        order.sort_by_key(|(c, _)| {
            MEASURING_ORDER
                .iter()
                .position(|id| *id == c.id)
                .unwrap_or(MEASURING_ORDER.len())
        });
        if round % 2 == 0 {
            order.reverse();
        }
        for (c, runs) in order {
            let run = load(c, "/page", secs, warmup, conns).await?;
            eprintln!(
                "round {round}/{rounds}, {conns} conns, ({}) {:<40} {:>9} req/s  p50 {:>6} µs  p99 {:>6} µs  errors {}  handler runs {}  Redis round trips/request {}",
                c.id,
                c.label,
                thousands(run.rps),
                run.p50,
                run.p99,
                run.errors,
                run.handler_runs,
                if run.trips.is_nan() {
                    "-".to_owned()
                } else {
                    format!("{:.2}", run.trips)
                }
            );
            runs.push(run);
        }
    }
    Ok(runs.iter().map(|r| summarize(r)).collect())
}

// ---------------------------------------------------------------------------------
// Invalidation and memory
// ---------------------------------------------------------------------------------

/// Writes `from..to` pages of group `g` at `version`, where the `RedisStore` puts them.
async fn fill(
    conn: &mut ConnectionManager,
    store: &RedisStore,
    version: u64,
    from: u64,
    to: u64,
    value: &[u8],
) -> redis::RedisResult<()> {
    const BATCH: u64 = 10_000;
    let mut i = from;
    while i < to {
        let mut pipe = redis::pipe();
        for j in i..(i + BATCH).min(to) {
            let hash = hash_key("", &[("g", version)], &format!("127.0.0.1/items/{j}"));
            pipe.cmd("SET")
                .arg(store.page_key(&hash))
                .arg(value)
                .arg("EX")
                .arg(3600)
                .ignore();
        }
        let () = pipe.query_async(conn).await?;
        i += BATCH;
    }
    Ok(())
}

/// The invalidation this crate replaces: SCAN for the pages, UNLINK what is found.
async fn scan_delete(conn: &mut ConnectionManager, pattern: &str) -> redis::RedisResult<u64> {
    let mut cursor = 0u64;
    let mut deleted = 0;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(1000)
            .query_async(conn)
            .await?;
        if !keys.is_empty() {
            let n: u64 = redis::cmd("UNLINK").arg(&keys).query_async(conn).await?;
            deleted += n;
        }
        if next == 0 {
            return Ok(deleted);
        }
        cursor = next;
    }
}

struct InvalidationRow {
    pages: u64,
    fill: Duration,
    invalidate_median: Duration,
    invalidate_p90: Duration,
    scan_delete: Duration,
    deleted: u64,
}

async fn invalidation(
    conn: &mut ConnectionManager,
    url: &str,
    max_pages: u64,
    calls: usize,
    value: &[u8],
) -> Result<Vec<InvalidationRow>, String> {
    let e = |e: &dyn std::fmt::Display| e.to_string();
    let mut sizes: Vec<u64> = [100, 10_000, 100_000, 1_000_000]
        .into_iter()
        .filter(|s| *s < max_pages)
        .collect();
    sizes.push(max_pages);
    // One store (namespace) and cache per size, so that every group can be in Redis
    // at once.
    let mut caches = Vec::new();
    for pages in &sizes {
        let store = RedisStore::builder(url)
            .namespace(format!("inval-{pages}"))
            .command_timeout(Duration::from_secs(5))
            .build()
            .map_err(|x| e(&x))?;
        let cache = Cache::builder(store.clone())
            .timeout(Duration::from_secs(10))
            .build();
        caches.push((store, cache));
    }

    // `invalidate_group` is timed with every group filled, the calls on the groups of
    // each size taking turns: whatever else the machine does during the run weighs on
    // every size alike, and so does Redis's own state (its keyspace, its rehashing).
    let mut fills = Vec::new();
    for (pages, (store, cache)) in sizes.iter().zip(&caches) {
        let version = cache.group_version("g").await.map_err(|x| e(&x))?;
        let t = Instant::now();
        fill(conn, store, version, 0, *pages, value)
            .await
            .map_err(|x| e(&x))?;
        fills.push(t.elapsed());
        cache.invalidate_group("g").await.map_err(|x| e(&x))?; // loads the script
    }
    let mut times = vec![Vec::with_capacity(calls); sizes.len()];
    for _ in 0..calls {
        for ((_, cache), times) in caches.iter().zip(&mut times) {
            let t = Instant::now();
            cache.invalidate_group("g").await.map_err(|x| e(&x))?;
            times.push(t.elapsed());
        }
    }
    let () = redis::cmd("FLUSHALL")
        .query_async(conn)
        .await
        .map_err(|x| e(&x))?;

    // SCAN + UNLINK walks the whole keyspace, so each size is measured alone: fill its
    // pages into an empty server, then delete them.
    let mut rows = Vec::new();
    for (((pages, (store, cache)), mut times), fill_time) in
        sizes.iter().zip(&caches).zip(times).zip(fills)
    {
        let version = cache.group_version("g").await.map_err(|x| e(&x))?;
        fill(conn, store, version, 0, *pages, value)
            .await
            .map_err(|x| e(&x))?;
        let t = Instant::now();
        let deleted = scan_delete(conn, &format!("{}:page:*", store.namespace()))
            .await
            .map_err(|x| e(&x))?;
        times.sort_unstable();
        let row = InvalidationRow {
            pages: *pages,
            fill: fill_time,
            invalidate_median: times[times.len() / 2],
            invalidate_p90: times[times.len() * 9 / 10],
            scan_delete: t.elapsed(),
            deleted,
        };
        eprintln!(
            "invalidation: {pages} pages (filled in {:.1} s): invalidate_group median {:.0} µs, p90 {:.0} µs; SCAN + UNLINK {:.1} ms ({deleted} deleted)",
            row.fill.as_secs_f64(),
            micros(row.invalidate_median),
            micros(row.invalidate_p90),
            row.scan_delete.as_secs_f64() * 1e3
        );
        rows.push(row);
    }
    Ok(rows)
}

struct MemoryRow {
    path: &'static str,
    body: usize,
    value: u64,
    entry_usage: u64,
    version_usage: u64,
    /// The stored value itself.
    raw: Vec<u8>,
}

/// `MEMORY USAGE` of the entry the server at `addr` stored for `path`, and of the
/// path and URL version keys every page has beside it.
async fn page_memory(
    conn: &mut ConnectionManager,
    store: &RedisStore,
    addr: SocketAddr,
    path: &'static str,
    body: usize,
) -> Result<MemoryRow, String> {
    let e = |e: &dyn std::fmt::Display| e.to_string();
    let reply = fetch(addr, path).await.map_err(|x| e(&x))?;
    if reply.status != 200 || reply.body_len != body {
        return Err(format!("{path}: status {}", reply.status));
    }
    let groups = vec!["bench".to_owned()];
    let key = format!("{addr}{path}");
    let scopes = [Version::Path(path), Version::Url(path)];
    let lookup = store
        .lookup(PageKey {
            prefix: "",
            groups: &groups,
            key: &key,
            caller: None,
            scopes: &scopes,
        })
        .await
        .map_err(|x| e(&x))?;
    if lookup.entry.is_none() {
        return Err(format!(
            "{path}: no entry at {}",
            store.page_key(&lookup.hash)
        ));
    }
    let page_key = store.page_key(&lookup.hash);
    let usage = |key: String| {
        redis::cmd("MEMORY")
            .arg("USAGE")
            .arg(key)
            .arg("SAMPLES")
            .arg(0)
            .clone()
    };
    let entry_usage: u64 = usage(page_key.clone())
        .query_async(conn)
        .await
        .map_err(|x| e(&x))?;
    let raw: Vec<u8> = conn.get(&page_key).await.map_err(|x| e(&x))?;
    let mut version_usage = 0;
    for v in scopes {
        let n: Option<u64> = usage(store.version_key(v))
            .query_async(conn)
            .await
            .map_err(|x| e(&x))?;
        version_usage += n.unwrap_or(0);
    }
    Ok(MemoryRow {
        path,
        body,
        value: raw.len() as u64,
        raw,
        entry_usage,
        version_usage,
    })
}

// ---------------------------------------------------------------------------------
// The report
// ---------------------------------------------------------------------------------

/// A rate as `35,100`; `n/a` when it could not be measured.
fn thousands(x: f64) -> String {
    if !x.is_finite() {
        return "n/a".to_owned();
    }
    bench::thousands(x.round() as u64)
}

/// `x` to `prec` decimals (with its sign when `signed`), or "n/a" when a configuration
/// it depends on was not run (under `--only`).
fn fixed(x: f64, prec: usize, signed: bool) -> String {
    match (x.is_finite(), signed) {
        (false, _) => "n/a".to_owned(),
        (true, true) => format!("{x:+.prec$}"),
        (true, false) => format!("{x:.prec$}"),
    }
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn verdict(ok: bool) -> &'static str {
    if ok { "PASS" } else { "FAIL" }
}

/// A measured ratio for a verdict that `passes` gives: two decimals, or three where
/// two would round it onto the other side of the target (0.897 against ≥ 0.90 shows
/// as 0.897, not as a failing 0.90).
fn beside(ratio: f64, passes: impl Fn(f64) -> bool) -> String {
    let two = format!("{ratio:.2}");
    let rounded: f64 = two.parse().unwrap_or(ratio);
    if passes(rounded) == passes(ratio) {
        two
    } else {
        format!("{ratio:.3}")
    }
}

fn command_output(cmd: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(cmd).args(args).output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    (!text.is_empty()).then_some(text)
}

macro_rules! out {
    ($s:expr, $($t:tt)*) => {{ let _ = writeln!($s, $($t)*); }};
}

// ---------------------------------------------------------------------------------
// main
// ---------------------------------------------------------------------------------

fn main() {
    let args: Vec<String> = env::args().skip(1).collect();
    if args.first().is_some_and(|a| a == "--client") {
        std::process::exit(client_main(&args[1..]));
    }
    if !args.iter().any(|a| a == "--bench") {
        // `cargo test --benches` runs bench targets without `--bench`: this one takes
        // minutes and starts servers, so it only runs under `cargo bench`.
        println!(
            "load benchmark skipped: run it with `cargo bench -p cache-page-tests --bench load`"
        );
        return;
    }
    let opts = Options::parse(&args);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let code = rt.block_on(async {
        // On Ctrl-C or SIGTERM the run is dropped, and with it the guards of every
        // process it started (the load client is killed on drop).
        tokio::select! {
            result = run(opts) => match result {
                Ok(()) => 0,
                Err(err) => {
                    eprintln!("benchmark failed: {err}");
                    1
                }
            },
            code = bench::stop_signal() => {
                eprintln!("interrupted");
                i32::from(code)
            }
        }
    });
    drop(rt);
    std::process::exit(code);
}

async fn run(opts: Options) -> Result<(), String> {
    let e = |e: &dyn std::fmt::Display| e.to_string();
    let started = Instant::now();
    eprintln!("options: {opts:?}");

    let (redis_server, redis_port) = start_redis()?;
    let url = format!("redis://127.0.0.1:{redis_port}/");
    eprintln!("redis-server on 127.0.0.1:{redis_port}");
    let client = redis::Client::open(url.as_str()).map_err(|x| e(&x))?;
    let mut admin = client
        .get_connection_manager_with_config(
            ConnectionManagerConfig::new().set_response_timeout(Some(Duration::from_secs(60))),
        )
        .await
        .map_err(|x| e(&x))?;
    let () = admin
        .set(BODY_KEY, BODY.as_ref())
        .await
        .map_err(|x| e(&x))?;
    let () = admin.set("bench:version", 1).await.map_err(|x| e(&x))?;
    let () = admin
        .set("bench:body:1", BODY.as_ref())
        .await
        .map_err(|x| e(&x))?;
    let handler_conn = client.get_connection_manager().await.map_err(|x| e(&x))?;

    let bare_addr = listen(Router::new().route("/page", get(bare)))
        .await
        .map_err(|x| e(&x))?;
    let headed_addr = listen(Router::new().route("/page", get(bare_with_hit_headers)))
        .await
        .map_err(|x| e(&x))?;
    let one_addr = listen(
        Router::new()
            .route("/page", get(one_get))
            .with_state(handler_conn.clone()),
    )
    .await
    .map_err(|x| e(&x))?;
    let two_addr = listen(
        Router::new()
            .route("/page", get(two_gets))
            .with_state(handler_conn),
    )
    .await
    .map_err(|x| e(&x))?;
    // Each cached configuration has a server and a store of its own, so that the miss
    // runs neither evict nor slow the hit runs' pages, and round trips are counted
    // per configuration.
    let redis_store = |namespace: &str, pipelined: bool, tracked: bool, near: bool| {
        let store = RedisStore::builder(url.as_str())
            .namespace(namespace)
            .pipelined_hits(pipelined)
            .tracked_versions(tracked);
        let store = if near {
            store
        } else {
            store.near_cache_bytes(0)
        };
        store.build().map_err(|x| e(&x))
    };
    let hit_store = redis_store("bench", true, true, true)?;
    let get_store = redis_store("bench-get", true, true, false)?;
    let mget_store = redis_store("bench-mget", true, false, false)?;
    let seed_store = redis_store("bench-seed", false, false, false)?;
    let miss_store = redis_store("bench-miss", true, true, true)?;
    let lag_store = RedisStore::builder(url.as_str())
        .namespace("bench-lag")
        .invalidation_lag(Duration::from_millis(5))
        .build()
        .map_err(|x| e(&x))?;
    cache_page_runtime::install_named("bench", Cache::new(hit_store.clone()));
    cache_page_runtime::install_named("bench-get", Cache::new(get_store.clone()));
    cache_page_runtime::install_named("bench-mget", Cache::new(mget_store.clone()));
    cache_page_runtime::install_named("bench-seed", Cache::new(seed_store.clone()));
    cache_page_runtime::install_named("bench-miss", Cache::new(miss_store.clone()));
    cache_page_runtime::install_named("bench-lag", Cache::new(lag_store.clone()));
    cache_page_runtime::install(Cache::new(MemoryStore::new())).map_err(|x| e(&x))?;
    cache_page_runtime::install_named("bench-memory-miss", Cache::new(MemoryStore::new()));
    cache_page_runtime::install_named(
        "bench-memory-shared",
        Cache::new(MemoryStore::builder().thread_copies(false).build()),
    );
    let redis_addr = listen(redis_router()).await.map_err(|x| e(&x))?;
    let get_addr = listen(get_router()).await.map_err(|x| e(&x))?;
    let mget_addr = listen(mget_router()).await.map_err(|x| e(&x))?;
    let lag_addr = listen(lag_router()).await.map_err(|x| e(&x))?;
    let seed_addr = listen(seed_router()).await.map_err(|x| e(&x))?;
    let redis_miss_addr = listen(redis_miss_router()).await.map_err(|x| e(&x))?;
    let memory_addr = listen(memory_router()).await.map_err(|x| e(&x))?;
    let memory_shared_addr = listen(memory_shared_router()).await.map_err(|x| e(&x))?;
    let memory_miss_addr = listen(memory_miss_router()).await.map_err(|x| e(&x))?;
    let varnish = start_varnish(bare_addr).await?;
    let _ = DAEMON_PIDS.set(DaemonPids {
        redis: Some(redis_server.child.id()),
        varnish: varnish.as_ref().map(|(daemon, _)| daemon.child.id()),
    });

    // Every server answers 200 with the page; the cached ones serve hits.
    let mut warnings = Vec::new();
    let config = |id, label, addr, unique, store: Option<&RedisStore>| Config {
        id,
        label,
        addr,
        unique,
        store: store.cloned(),
    };
    let mut configs = vec![
        config("a", "bare axum handler", bare_addr, false, None),
        config("b", "handler doing one Redis GET", one_addr, false, None),
        config("c", "two sequential Redis GETs", two_addr, false, None),
        config(
            "d",
            "cache-page hit, RedisStore",
            redis_addr,
            false,
            Some(&hit_store),
        ),
        config(
            "d0",
            "cache-page hit, RedisStore, near_cache_bytes(0)",
            get_addr,
            false,
            Some(&get_store),
        ),
        config(
            "d1",
            "cache-page hit, RedisStore, tracked_versions(false)",
            mget_addr,
            false,
            Some(&mget_store),
        ),
        config(
            "d2",
            "cache-page hit, RedisStore, pipelined_hits(false)",
            seed_addr,
            false,
            Some(&seed_store),
        ),
        config(
            "d3",
            "cache-page hit, RedisStore, invalidation_lag(5 ms)",
            lag_addr,
            false,
            Some(&lag_store),
        ),
        config("e", "cache-page hit, MemoryStore", memory_addr, false, None),
        config(
            "e0",
            "cache-page hit, MemoryStore, thread_copies(false)",
            memory_shared_addr,
            false,
            None,
        ),
        config(
            "h",
            "bare handler sending a hit's headers",
            headed_addr,
            false,
            None,
        ),
    ];
    if let Some((_, addr)) = &varnish {
        configs.push(config("f", "Varnish in front of (a)", *addr, false, None));
    }
    let n_hit = configs.len();
    configs.extend([
        config("a′", "bare handler, unique URLs", bare_addr, true, None),
        config(
            "d′",
            "cache-page miss, RedisStore",
            redis_miss_addr,
            true,
            Some(&miss_store),
        ),
        config(
            "e′",
            "cache-page miss, MemoryStore",
            memory_miss_addr,
            true,
            None,
        ),
    ]);
    for Config {
        id, label, addr, ..
    } in &configs[..n_hit]
    {
        let mut last = None;
        for _ in 0..3 {
            last = Some(
                fetch(*addr, "/page")
                    .await
                    .map_err(|x| format!("({id}): {x}"))?,
            );
        }
        let last = last.expect("fetched");
        if last.status != 200 || last.body_len != BODY_LEN {
            return Err(format!(
                "({id}) {label}: status {}, {} bytes",
                last.status, last.body_len
            ));
        }
        let hit = match *id {
            "d" | "d0" | "d1" | "d2" | "d3" | "e" | "e0" => {
                last.head.contains("cache-status: cache-page; hit")
            }
            "f" => last
                .head
                .lines()
                .any(|l| l.starts_with("x-varnish:") && l.split_whitespace().count() == 3),
            _ => true,
        };
        if !hit {
            warnings.push(format!(
                "({id}) {label}: the page was not served from the cache:\n{}",
                last.head
            ));
        }
    }
    for w in &warnings {
        eprintln!("WARNING: {w}");
    }

    if !opts.only.is_empty() {
        configs.retain(|c| opts.only.iter().any(|id| id == c.id));
    }
    let n_hit = configs.iter().filter(|c| !c.unique).count();
    let loaded = measure(&configs, opts.rounds, opts.secs, opts.warmup, opts.conns).await?;
    let seq_secs = (opts.secs * 2.0 / 3.0).max(1.0);
    let single = measure(&configs, 1, seq_secs, opts.warmup.min(0.5), 1).await?;

    let memory = vec![
        page_memory(&mut admin, &hit_store, redis_addr, "/page", BODY_LEN).await?,
        page_memory(&mut admin, &hit_store, redis_addr, "/small", SMALL_LEN).await?,
    ];
    let redis_version = redis::cmd("INFO")
        .arg("server")
        .query_async::<String>(&mut admin)
        .await
        .ok()
        .and_then(|info| {
            info.lines()
                .find_map(|l| l.strip_prefix("redis_version:").map(str::to_owned))
        })
        .unwrap_or_default();

    // The load runs left hundreds of thousands of miss pages: start the invalidation
    // part on an empty server, so SCAN walks the pages of the group only.
    let () = redis::cmd("FLUSHALL")
        .query_async(&mut admin)
        .await
        .map_err(|x| e(&x))?;
    // The group is filled with copies of the 100-byte page as the store wrote it.
    let inval = invalidation(
        &mut admin,
        &url,
        opts.max_pages,
        opts.invalidations,
        &memory[1].raw,
    )
    .await?;

    let varnish_found = varnish.is_some();
    drop(varnish);
    drop(redis_server);

    // ---- the report ----
    let by_id = |id: &str, set: &[Summary]| -> Option<Summary> {
        configs
            .iter()
            .position(|c| c.id == id)
            .map(|i| set[i].clone())
    };
    let rps = |id: &str| by_id(id, &loaded).map_or(f64::NAN, |s| s.rps);
    // A ratio is taken round by round, where the two configurations ran a few seconds
    // apart, and the verdict is on the median of those ratios: a shared machine's speed
    // drifts over a run, and the two configurations' median rounds (whose ratio is
    // printed beside it) can come from rounds taken at different speeds. The range of
    // the round-by-round ratios shows how far the noise moves one.
    let paired = |x: &str, y: &str| -> Option<(f64, f64, f64)> {
        let (x, y) = (by_id(x, &loaded)?, by_id(y, &loaded)?);
        let each: Vec<f64> = x
            .rounds
            .iter()
            .zip(&y.rounds)
            .map(|(x, y)| x / y)
            .filter(|r| r.is_finite())
            .collect();
        let lo = each.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = each.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        (!each.is_empty()).then(|| (median(each), lo, hi))
    };
    let mut r = String::new();
    let date = command_output("date", &["-u", "+%Y-%m-%d %H:%M UTC"]).unwrap_or_default();
    out!(r, "");
    out!(r, "## Results");
    out!(r, "");
    out!(r, "- Date: {date}");
    out!(r, "- Machine: {}", bench::machine());
    out!(r, "- Allocator of the axum servers: {ALLOCATOR}");
    out!(
        r,
        "- Redis {redis_version}; {}",
        command_output("varnishd", &["-V"])
            .or_else(|| {
                // varnishd -V prints on stderr.
                let o = Command::new("varnishd").arg("-V").output().ok()?;
                String::from_utf8_lossy(&o.stderr)
                    .lines()
                    .next()
                    .map(str::to_owned)
            })
            .unwrap_or_else(|| "Varnish not installed".to_owned())
    );
    out!(
        r,
        "- Load: {} keep-alive HTTP/1.1 connections from a separate process; {} rounds of {} s per configuration after {} s of warm-up, interleaved with the two of each target side by side, every other round in reverse order; 1 KiB body",
        opts.conns,
        opts.rounds,
        opts.secs,
        opts.warmup
    );
    out!(r, "");
    out!(
        r,
        "### Hits, {} connections (median of {} rounds)",
        opts.conns,
        opts.rounds
    );
    out!(r, "");
    out!(
        r,
        "| | configuration | req/s | × bare (median of the rounds' ratios) | p50 µs | p99 µs | req/s of each round | Redis round trips per request | errors |"
    );
    out!(r, "|---|---|---:|---:|---:|---:|---|---:|---:|");
    for (c, s) in configs.iter().zip(&loaded).take(n_hit) {
        out!(
            r,
            "| {} | {} | {} | {} | {:.0} | {:.0} | {} | {} | {} |",
            c.id,
            c.label,
            thousands(s.rps),
            fixed(paired(c.id, "a").map_or(f64::NAN, |(m, _, _)| m), 2, false),
            s.p50,
            s.p99,
            s.rounds
                .iter()
                .map(|x| thousands(*x))
                .collect::<Vec<_>>()
                .join(" / "),
            trips(c, s),
            s.errors
        );
    }
    if !varnish_found {
        out!(
            r,
            "| f | Varnish | skipped: varnishd not found (apt-get install varnish) | | | | | | |"
        );
    }
    out!(r, "");
    out!(
        r,
        "| ratio | measured (median of the rounds' ratios) | rounds' range | ratio of the median rounds | target | |"
    );
    out!(r, "|---|---:|---|---:|---|---|");
    let targeted = [
        ("e", "a", "in-process hit ÷ bare handler", 0.90),
        ("d", "b", "Redis hit ÷ one Redis GET", 0.95),
        ("d", "f", "Redis hit ÷ Varnish hit", 1.30),
    ];
    for (num, den, what, target) in targeted {
        if let Some((ratio, lo, hi)) = paired(num, den) {
            out!(
                r,
                "| {num}/{den} {what} | {} | {lo:.2}–{hi:.2} | {:.2} | ≥ {target:.2} | {} |",
                beside(ratio, |r| r >= target),
                rps(num) / rps(den),
                verdict(ratio >= target)
            );
        } else {
            let why = if [num, den].contains(&"f") && !varnish_found {
                "skipped (no varnishd)"
            } else {
                "not run (--only)"
            };
            out!(
                r,
                "| {num}/{den} {what} | n/a | | | ≥ {target:.2} | {why} |"
            );
        }
    }
    // The ratios without a target: what each design choice gains, and the baselines
    // (rows whose configurations did not run, such as f without varnishd, are left out).
    let untargeted = [
        (
            "e",
            "h",
            "in-process hit ÷ bare handler sending the same headers (the cache's own work)",
            "| |",
        ),
        (
            "h",
            "a",
            "bare handler sending a hit's headers ÷ bare (a hit's longer head)",
            "| |",
        ),
        (
            "e",
            "e0",
            "each thread's own copy of the page ÷ one entry both cores share, both MemoryStore",
            "| |",
        ),
        (
            "d0",
            "b",
            "Redis hit without the near cache (one GET) ÷ one Redis GET",
            "| |",
        ),
        (
            "d",
            "d0",
            "page kept in process and a shared PING ÷ one GET, both cache-page",
            "| |",
        ),
        (
            "d3",
            "f",
            "Redis hit with invalidation_lag(5 ms) ÷ Varnish hit",
            "| |",
        ),
        (
            "d3",
            "d",
            "hits that need no PING of their own (5 ms lag) ÷ each hit confirmed by a PING sent after it began",
            "| |",
        ),
        (
            "d0",
            "d1",
            "one GET ÷ one MGET of versions and entry, both cache-page",
            "| |",
        ),
        (
            "d0",
            "d2",
            "one round trip ÷ version-then-entry, both cache-page",
            "| |",
        ),
        (
            "b",
            "a",
            "one Redis GET ÷ bare",
            "(issue: 0.69) | baseline |",
        ),
        ("c", "a", "two GETs ÷ bare", "(issue: 0.52) | baseline |"),
        ("f", "a", "Varnish ÷ bare", "(issue: 0.49) | baseline |"),
    ];
    for (num, den, what, rest) in untargeted {
        let Some((ratio, lo, hi)) = paired(num, den) else {
            continue;
        };
        out!(
            r,
            "| {num}/{den} {what} | {ratio:.2} | {lo:.2}–{hi:.2} | {:.2} | {rest}",
            rps(num) / rps(den)
        );
    }
    let fail_open: u64 = ["d", "d0", "e", "e0"]
        .iter()
        .filter_map(|id| by_id(id, &loaded))
        .map(|s| s.handler_runs)
        .sum();
    out!(r, "");
    out!(
        r,
        "The cached handler ran {fail_open} times during the hit runs (0: every request was a hit)."
    );

    out!(r, "");
    out!(
        r,
        "### CPU time per request, {} connections (µs, median of the rounds)",
        opts.conns
    );
    out!(r, "");
    let cores = *CORES;
    out!(
        r,
        "Each process's CPU time over the measured window (from `/proc`), divided by the requests served in it. The load client and every server share the machine's {cores} cores: \"elsewhere\" is the rest of the machine's busy time (the kernel's interrupt work, other processes), \"idle\" the time no core was busy."
    );
    out!(r, "");
    out!(
        r,
        "| | configuration | axum servers (this process) | load client | redis-server | varnishd | machine busy | of it elsewhere | machine idle |"
    );
    out!(r, "|---|---|---:|---:|---:|---:|---:|---:|---:|");
    // A figure that could not be read is left empty rather than "n/a".
    let cell = |v: f64| {
        if v.is_nan() {
            String::new()
        } else {
            fixed(v, 1, false)
        }
    };
    for (c, s) in configs.iter().zip(&loaded) {
        let cpu = &s.cpu;
        // A daemon that served nothing in this configuration shows as empty.
        let quiet = |v: f64| if v < 0.05 { f64::NAN } else { v };
        out!(
            r,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            c.id,
            c.label,
            cell(cpu.server),
            cell(cpu.client),
            cell(quiet(cpu.redis)),
            cell(quiet(cpu.varnish)),
            cell(cpu.machine),
            cell(cpu.elsewhere),
            cell(cpu.idle),
        );
    }
    // The targets again, by what a request cost the machine rather than by how many
    // were served: on a noisy host this tells a ratio missed by cost from one missed
    // by waits (idle) or by the rest of the machine (elsewhere).
    out!(r, "");
    out!(
        r,
        "The targets by these costs (the denominator's cost per request ÷ the numerator's; the targets themselves are taken by throughput, above):"
    );
    out!(r, "");
    out!(
        r,
        "| ratio | by the machine's time (busy + idle) | by busy time | by the processes' own time (busy less elsewhere) | target |"
    );
    out!(r, "|---|---:|---:|---:|---|");
    for (num, den, what, target) in targeted {
        let (Some(n), Some(d)) = (by_id(num, &loaded), by_id(den, &loaded)) else {
            continue;
        };
        let (n, d) = (&n.cpu, &d.cpu);
        let of = |f: fn(&Cpu) -> f64| fixed(f(d) / f(n), 2, false);
        out!(
            r,
            "| {num}/{den} {what} | {} | {} | {} | ≥ {target:.2} |",
            of(|c| c.machine + c.idle),
            of(|c| c.machine),
            of(|c| c.machine - c.elsewhere),
        );
    }

    out!(r, "");
    out!(
        r,
        "### Latency at 1 connection (one run of {seq_secs} s each)"
    );
    out!(r, "");
    out!(
        r,
        "| | configuration | req/s | p50 µs | p99 µs | p50 − bare's | Redis round trips per request |"
    );
    out!(r, "|---|---|---:|---:|---:|---:|---:|");
    let single_bare = by_id("a", &single).map_or(f64::NAN, |s| s.p50);
    let single_bare_unique = by_id("a′", &single).map_or(f64::NAN, |s| s.p50);
    for (c, s) in configs.iter().zip(&single) {
        let base = if c.unique {
            single_bare_unique
        } else {
            single_bare
        };
        out!(
            r,
            "| {} | {} | {} | {:.0} | {:.0} | {} | {} |",
            c.id,
            c.label,
            thousands(s.rps),
            s.p50,
            s.p99,
            fixed(s.p50 - base, 0, true),
            trips(c, s)
        );
    }

    out!(r, "");
    out!(
        r,
        "### Miss path: every request a new URL ({} connections, median of {} rounds)",
        opts.conns,
        opts.rounds
    );
    out!(r, "");
    out!(
        r,
        "| | configuration | req/s | × bare (ratio of the median rounds) | p50 µs | p99 µs | machine time per request over bare | Redis round trips per request | errors |"
    );
    out!(r, "|---|---|---:|---:|---:|---:|---:|---:|---:|");
    let miss_bare = rps("a′");
    for (c, s) in configs.iter().zip(&loaded).skip(n_hit) {
        out!(
            r,
            "| {} | {} | {} | {} | {:.0} | {:.0} | {} µs | {} | {} |",
            c.id,
            c.label,
            thousands(s.rps),
            fixed(s.rps / miss_bare, 2, false),
            s.p50,
            s.p99,
            fixed((1.0 / s.rps - 1.0 / miss_bare) * 1e6, 1, true),
            trips(c, s),
            s.errors
        );
    }
    let rtt = by_id("b", &single).map_or(f64::NAN, |s| s.p50) - single_bare;
    let miss_over = by_id("d′", &single).map_or(f64::NAN, |s| s.p50) - single_bare_unique;
    let miss_trips = by_id("d′", &single).map_or(f64::NAN, |s| s.trips);
    if miss_over.is_finite() && rtt.is_finite() {
        out!(r, "");
        out!(
            r,
            "At 1 connection a Redis miss adds {miss_over:.0} µs to the bare handler's p50 and makes {miss_trips:.1} round trips to Redis; one round trip from a handler adds {rtt:.0} µs (b − a)."
        );
    }

    out!(r, "");
    out!(
        r,
        "### `invalidate_group` as the group grows (median of {} calls per size, the sizes taking turns, every group in Redis at once) vs SCAN + UNLINK of the same pages (each size alone)",
        opts.invalidations
    );
    out!(r, "");
    out!(
        r,
        "| pages in the group | invalidate_group p50 | p90 | SCAN MATCH + UNLINK (once) | pages deleted |"
    );
    out!(r, "|---:|---:|---:|---:|---:|");
    for row in &inval {
        out!(
            r,
            "| {} | {:.0} µs | {:.0} µs | {:.1} ms | {} |",
            thousands(row.pages as f64),
            micros(row.invalidate_median),
            micros(row.invalidate_p90),
            row.scan_delete.as_secs_f64() * 1e3,
            thousands(row.deleted as f64)
        );
    }
    if let (Some(first), Some(last)) = (inval.first(), inval.last()) {
        let ratio = micros(last.invalidate_median) / micros(first.invalidate_median);
        let scan_ratio = last.scan_delete.as_secs_f64() / first.scan_delete.as_secs_f64();
        out!(r, "");
        out!(
            r,
            "invalidate_group at {} pages ÷ at {} pages: **{}** (target ≤ 1.2: {}); SCAN + UNLINK: {scan_ratio:.0}×.",
            thousands(last.pages as f64),
            thousands(first.pages as f64),
            beside(ratio, |r| r <= 1.2),
            verdict(ratio <= 1.2)
        );
    }

    out!(r, "");
    out!(r, "### Memory in Redis per cached page");
    out!(r, "");
    out!(
        r,
        "| page | body | stored value (STRLEN) | MEMORY USAGE of the entry | ÷ body | + its path and URL version keys | total ÷ body |"
    );
    out!(r, "|---|---:|---:|---:|---:|---:|---:|");
    for m in &memory {
        out!(
            r,
            "| {} | {} B | {} B | {} B | {:.2} | {} B | {:.2} |",
            m.path,
            m.body,
            m.value,
            m.entry_usage,
            m.entry_usage as f64 / m.body as f64,
            m.version_usage,
            (m.entry_usage + m.version_usage) as f64 / m.body as f64
        );
    }
    for w in &warnings {
        out!(r, "");
        out!(r, "WARNING: {w}");
    }
    out!(r, "");
    out!(r, "Total time: {:.0} s.", started.elapsed().as_secs_f64());
    println!("{r}");
    Ok(())
}

/// Round trips per request: counted for cache-page on Redis, by construction for the
/// handlers doing their own GETs.
fn trips(c: &Config, s: &Summary) -> String {
    match (&c.store, c.id) {
        (Some(_), _) => format!("{:.2}", s.trips),
        (None, "b") => "1".to_owned(),
        (None, "c") => "2".to_owned(),
        _ => String::new(),
    }
}
