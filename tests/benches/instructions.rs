//! The instruction benchmark of cache-page: how many CPU instructions one request costs
//! through a real axum `Router`, counted with valgrind's callgrind, for the bare
//! handler, a handler doing one Redis `GET`, cache hits on each store, and misses on
//! new URLs on each store.
//!
//! ```sh
//! cargo bench -p cache-page-tests --bench instructions
//! cargo bench -p cache-page-tests --bench instructions -- --only mem,redis --requests 5000
//! ```
//!
//! It needs `valgrind` on `PATH` (Debian/Ubuntu: `apt-get install valgrind`) and says
//! it skips otherwise; the Redis modes also need `redis-server`. The counts are
//! instructions, not seconds, so they repeat from run to run, even on a busy machine;
//! they are the figures to compare changes to the hit path by.
//!
//! It starts a private `redis-server` on a free port of 127.0.0.1, then, for each mode,
//! runs this binary again (`--child MODE N PORT`) under `valgrind --tool=callgrind`
//! with N = 200 and N = 2,000 measured requests after the same warm-up. Each request is
//! `GET /page` with a `Host` header (`/page?n=N`, a URL never asked before, in the
//! miss modes), sent with `tower::ServiceExt::oneshot` (no sockets) on a
//! current-thread Tokio runtime; its `Cache-Status` and whole body are read, and it
//! must be a hit in the hit modes, a miss that stores the page in the miss modes. The
//! difference of the two totals divided by the difference of their requests is the
//! cost of one request, without the start-up, the set-up and the warm-up. The Redis server is emptied before every run,
//! and stopped at the end, on an error or on Ctrl-C; the children exit by themselves.
//!
//! The warm-up is the same in every mode: ten requests, each followed by a 20 ms pause
//! in which the work they leave to the background runs alone (storing the page, the
//! store's connections), then, in the Redis modes of one command per request, batches
//! of ten until a batch makes Redis run ten of its one command and nothing else (in
//! `redis-lag`, no command at all; at most 30 s), then 50 requests. A Redis hit at
//! tracked versions is one `GET` (or, by default, one `PING` for a page kept in
//! process) only once the store's tracking connection is up and has learnt the page's
//! versions, which happens in the background after its first hits. The parent counts
//! the commands, with `INFO commandstats` before and after each batch and the measured
//! requests, which the child waits for on its stdin; the table shows those of the
//! measured requests.
//!
//! The counts include malloc's, which depend on how the heap is laid out, and that on
//! what the process did before: a child that read `INFO` itself (a reply whose length
//! changes from run to run), or whose background work ran between requests rather
//! than in the pauses, moved the cost of a request by up to 3% from one run to the
//! next. What is left follows the clock (housekeeping on a timer, such as moka's in
//! the `MemoryStore`, most likely): a `mem` run in a few can come out about 1% off,
//! more often on a loaded machine, so each mode and N runs three times (`--runs`) and
//! the median totals count. The totals of every run are printed on stderr.
//!
//! Options (after `--`): `--only mem,redis` to measure only some modes, `--requests N`
//! for the larger number of measured requests (2,000), `--runs K` runs of each (3),
//! `--profiles DIR` to keep callgrind's output of every run in `DIR`
//! (`callgrind.<mode>.<requests>.<run>`, for `callgrind_annotate`).

use std::{
    collections::BTreeMap,
    env,
    fmt::Write as _,
    path::{Path, PathBuf},
    process::{ExitCode, Stdio},
    sync::atomic::{AtomicU64, Ordering},
    time::{Duration, Instant},
};

use axum::{
    Router,
    body::Body,
    http::{Request, StatusCode, header},
    response::Response,
    routing::get,
};
use cache_page_runtime::{Cache, MemoryStore, RedisStore, cache_page};
use cache_page_tests::{
    RedisCli, RedisServer,
    bench::{BODY, BODY_KEY, BODY_LEN, bare, one_get, page, thousands},
    on_path,
};
use http_body_util::BodyExt;
use redis::AsyncCommands;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tower::ServiceExt;

// ---------------------------------------------------------------------------------
// The modes
// ---------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy)]
struct Mode {
    name: &'static str,
    description: &'static str,
    /// What its responses must be once warmed up.
    expect: Expect,
    /// Whether it talks to Redis: the Redis server is started for it, and the
    /// commands of its measured requests are counted.
    redis: bool,
    /// The commands a request makes Redis run once warmed up (one, or none at all),
    /// which the warm-up waits for; `None` when there is no such state to wait for.
    commands: Option<&'static [&'static str]>,
}

/// What a mode's responses must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// Anything the handler answers (the handlers without the cache).
    Any,
    /// Cache hits.
    Hit,
    /// Misses that store the page: each request is for a URL never asked before.
    Miss,
}

const MODES: [Mode; 9] = [
    Mode {
        name: "bare",
        description: "bare axum handler",
        expect: Expect::Any,
        redis: false,
        commands: None,
    },
    Mode {
        name: "get",
        description: "handler doing one Redis GET",
        expect: Expect::Any,
        redis: true,
        commands: Some(&["get"]),
    },
    Mode {
        name: "mem",
        description: "cache-page hit, MemoryStore",
        expect: Expect::Hit,
        redis: false,
        commands: None,
    },
    Mode {
        name: "redis",
        description: "cache-page hit, RedisStore (page kept in process, one PING)",
        expect: Expect::Hit,
        redis: true,
        commands: Some(&["ping"]),
    },
    Mode {
        name: "redis-lag",
        description: "cache-page hit, RedisStore, invalidation_lag(600 s) (page kept in process, no command)",
        expect: Expect::Hit,
        redis: true,
        commands: Some(&[]),
    },
    Mode {
        name: "redis-get",
        description: "cache-page hit, RedisStore, near_cache_bytes(0) (one GET at tracked versions)",
        expect: Expect::Hit,
        redis: true,
        commands: Some(&["get"]),
    },
    Mode {
        name: "mget",
        description: "cache-page hit, RedisStore, tracked_versions(false) (one MGET)",
        expect: Expect::Hit,
        redis: true,
        commands: Some(&["mget"]),
    },
    Mode {
        name: "mem-miss",
        description: "cache-page miss on a new URL, MemoryStore (looked up, run, stored)",
        expect: Expect::Miss,
        redis: false,
        commands: None,
    },
    Mode {
        name: "redis-miss",
        description: "cache-page miss on a new URL, RedisStore (looked up, run, stored)",
        expect: Expect::Miss,
        redis: true,
        commands: None,
    },
];

fn mode(name: &str) -> Option<Mode> {
    MODES.iter().copied().find(|m| m.name == name)
}

/// The smaller number of measured requests; the larger is `--requests`.
const SMALL_N: u64 = 200;
/// Requests of the warm-up each followed by a [`PAUSE`], in every mode.
const PAUSED: usize = 10;
/// A pause of the warm-up, for the store's background tasks.
const PAUSE: Duration = Duration::from_millis(20);
/// Requests of the warm-up once steady, just before the measured ones, in every mode.
const WARMUP: usize = 50;
/// How long the warm-up may wait for a steady state (the tracked versions).
const STEADY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a child may run in all.
const CHILD_TIMEOUT: Duration = Duration::from_secs(600);
/// The requests of one check of the steady state.
const STEADY_BATCH: u64 = 10;

// ---------------------------------------------------------------------------------
// Options
// ---------------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct Options {
    /// The larger number of measured requests.
    requests: u64,
    /// Runs of each mode and number of requests; their median total counts.
    runs: usize,
    /// Where to keep callgrind's output files, if anywhere.
    profiles: Option<PathBuf>,
    /// The modes to measure, in table order.
    modes: Vec<Mode>,
}

impl Options {
    fn parse(args: &[String]) -> Result<Options, String> {
        let mut o = Options {
            requests: 2_000,
            runs: 3,
            profiles: None,
            modes: MODES.to_vec(),
        };
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            match arg.as_str() {
                "--requests" => {
                    o.requests = it
                        .next()
                        .and_then(|v| v.replace('_', "").parse().ok())
                        .filter(|&n| n > SMALL_N)
                        .ok_or(format!("--requests needs a number above {SMALL_N}"))?;
                }
                "--runs" => {
                    o.runs = it
                        .next()
                        .and_then(|v| v.parse().ok())
                        .filter(|&n| n > 0)
                        .ok_or("--runs needs a number above 0")?;
                }
                "--profiles" => {
                    let dir = it.next().ok_or("--profiles needs a directory")?;
                    std::fs::create_dir_all(dir)
                        .map_err(|e| format!("cannot create {dir}: {e}"))?;
                    o.profiles = Some(PathBuf::from(dir));
                }
                "--only" => {
                    let names = it.next().ok_or("--only needs a list of modes")?;
                    let wanted = names
                        .split(',')
                        .map(|name| {
                            mode(name.trim()).map(|m| m.name).ok_or(format!(
                                "unknown mode {name:?}; the modes are {}",
                                MODES.map(|m| m.name).join(", ")
                            ))
                        })
                        .collect::<Result<Vec<_>, _>>()?;
                    o.modes = MODES
                        .into_iter()
                        .filter(|m| wanted.contains(&m.name))
                        .collect();
                }
                // `cargo bench` passes `--bench`; a filter may follow it.
                _ => {}
            }
        }
        Ok(o)
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = env::args().skip(1).collect();
    if let Some(i) = args.iter().position(|a| a == "--child") {
        return child_main(&args[i + 1..]);
    }
    let opts = match Options::parse(&args) {
        Ok(opts) => opts,
        Err(err) => {
            eprintln!("{err}");
            return ExitCode::from(2);
        }
    };
    let Some(valgrind) = on_path("valgrind") else {
        println!(
            "instructions: skipped (valgrind not found on PATH; \
             Debian/Ubuntu: apt-get install valgrind)"
        );
        return ExitCode::SUCCESS;
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a Tokio runtime");
    let code = rt.block_on(async {
        // On Ctrl-C or SIGTERM the run is dropped, and with it the child under
        // valgrind (killed on drop) and the Redis server.
        tokio::select! {
            result = run(&opts, &valgrind) => match result {
                Ok(()) => ExitCode::SUCCESS,
                Err(err) => {
                    eprintln!("benchmark failed: {err}");
                    ExitCode::FAILURE
                }
            },
            code = cache_page_tests::bench::stop_signal() => {
                eprintln!("interrupted");
                ExitCode::from(code)
            }
        }
    });
    drop(rt);
    code
}

// ---------------------------------------------------------------------------------
// The parent: runs the children under callgrind and prints the table.
// ---------------------------------------------------------------------------------

/// What one mode measured.
struct Measured {
    mode: Mode,
    per_request: f64,
    /// The commands Redis ran during the measured requests of a larger run.
    commands: BTreeMap<String, u64>,
}

/// What one child run reported.
struct ChildRun {
    /// Instructions, from callgrind's `Collected :` line.
    instructions: u64,
    /// The commands Redis ran during the measured requests.
    commands: BTreeMap<String, u64>,
}

/// The private Redis server of the Redis modes, and a connection to it.
struct Redis {
    server: RedisServer,
    cli: RedisCli,
}

impl Redis {
    /// The calls of every command in `INFO commandstats`.
    async fn calls(&mut self) -> BTreeMap<String, u64> {
        self.cli.command_calls().await
    }
}

async fn run(opts: &Options, valgrind: &Path) -> Result<(), String> {
    let exe = env::current_exe().map_err(|e| format!("cannot find this binary: {e}"))?;
    let mut modes = opts.modes.clone();
    let mut redis = None;
    if modes.iter().any(|m| m.redis) {
        if on_path("redis-server").is_none() {
            return Err(
                "redis-server not found on PATH; install it (Debian/Ubuntu: \
                 apt-get install redis-server), or leave the Redis modes out with \
                 --only bare,mem"
                    .to_owned(),
            );
        }
        // Its commands are counted: with CACHE_PAGE_REDIS_URL set (a shared server),
        // this says why the Redis modes are skipped and gives none.
        match RedisServer::start_private("the Redis modes of the instructions benchmark") {
            Some(server) => {
                eprintln!("redis-server on {}", server.url());
                let cli = server.cli().await;
                redis = Some(Redis { server, cli });
            }
            None => modes.retain(|m| !m.redis),
        }
    }

    let mut results = Vec::new();
    for mode in modes {
        // Small and large runs alternate, so that a change in the machine's load
        // falls on both.
        let mut small = Vec::new();
        let mut large = Vec::new();
        let mut commands = BTreeMap::new();
        for i in 0..opts.runs {
            for n in [SMALL_N, opts.requests] {
                let started = Instant::now();
                let out = match &opts.profiles {
                    Some(dir) => dir.join(format!("callgrind.{}.{n}.{}", mode.name, i + 1)),
                    None => PathBuf::from("/dev/null"),
                };
                let run = run_child(valgrind, &exe, mode, n, &out, redis.as_mut()).await?;
                eprintln!(
                    "{}: {n} requests, {} instructions ({:.1} s)",
                    mode.name,
                    run.instructions,
                    started.elapsed().as_secs_f64()
                );
                if n == SMALL_N {
                    small.push(run.instructions);
                } else {
                    large.push(run.instructions);
                    commands = run.commands;
                }
            }
        }
        let per_request = median(&mut large).saturating_sub(median(&mut small)) as f64
            / (opts.requests - SMALL_N) as f64;
        results.push(Measured {
            mode,
            per_request,
            commands,
        });
    }
    drop(redis);

    println!("{}", table(&results, opts.requests));
    Ok(())
}

/// The median of `values` (the upper one of an even count).
fn median(values: &mut [u64]) -> u64 {
    values.sort_unstable();
    values[values.len() / 2]
}

/// Runs this binary as `--child` under callgrind on an emptied Redis, answers it (see
/// [`Parent`]), and reads what it reported.
async fn run_child(
    valgrind: &Path,
    exe: &Path,
    mode: Mode,
    n: u64,
    out: &Path,
    mut redis: Option<&mut Redis>,
) -> Result<ChildRun, String> {
    let port = match redis.as_mut() {
        Some(redis) => {
            redis.cli.cmd::<()>(&["FLUSHALL"]).await;
            redis.server.port()
        }
        None => 0,
    };
    let mut child = tokio::process::Command::new(valgrind)
        .arg("--tool=callgrind")
        .arg(format!("--callgrind-out-file={}", out.display()))
        .arg(exe)
        .args(["--child", mode.name])
        .arg(n.to_string())
        .arg(port.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", valgrind.display()))?;
    let mut stderr = child.stderr.take().expect("piped");
    let stderr = tokio::spawn(async move {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text).await;
        text
    });
    let mut to_child = child.stdin.take().expect("piped");
    let mut from_child = BufReader::new(child.stdout.take().expect("piped")).lines();

    // The conversation: the child says `batch` or `measure` before a batch of the
    // warm-up or the measured requests and waits for `go`, says `done` after, and
    // after a batch waits for `steady` or `again`.
    let steady = mode.commands.map(|commands| {
        (commands.iter())
            .map(|command| ((*command).to_owned(), STEADY_BATCH))
            .collect::<BTreeMap<_, _>>()
    });
    let deadline = Instant::now() + STEADY_TIMEOUT;
    let mut before = BTreeMap::new();
    let mut commands = BTreeMap::new();
    let mut measuring = false;
    let talk = async {
        while let Some(line) = from_child.next_line().await.map_err(|e| e.to_string())? {
            let calls = match redis.as_mut() {
                Some(redis) => redis.calls().await,
                None => BTreeMap::new(),
            };
            let answer = match line.as_str() {
                Parent::BATCH | Parent::MEASURE => {
                    measuring = line == Parent::MEASURE;
                    before = calls;
                    Parent::GO
                }
                Parent::DONE if measuring => {
                    commands = grown(&before, &calls);
                    continue;
                }
                Parent::DONE => {
                    let made = grown(&before, &calls);
                    if Some(&made) == steady.as_ref() {
                        Parent::STEADY
                    } else if Instant::now() < deadline {
                        Parent::AGAIN
                    } else {
                        return Err(format!(
                            "after {STEADY_TIMEOUT:?}, {STEADY_BATCH} requests still made \
                             Redis run {made:?}, not {steady:?}"
                        ));
                    }
                }
                other => return Err(format!("unexpected line from the child: {other:?}")),
            };
            to_child
                .write_all(format!("{answer}\n").as_bytes())
                .await
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    };
    let talked = tokio::time::timeout(CHILD_TIMEOUT, talk)
        .await
        .unwrap_or_else(|_| Err(format!("no end after {CHILD_TIMEOUT:?}")));
    if talked.is_err() {
        let _ = child.start_kill();
    }
    let status = child.wait().await.map_err(|e| e.to_string())?;
    let stderr = stderr.await.unwrap_or_default();
    let name = mode.name;
    let failed = |why: String| format!("{name} with {n} requests failed ({why}):\n{stderr}");
    talked.map_err(failed)?;
    if !status.success() {
        return Err(failed(status.to_string()));
    }
    let instructions = stderr
        .lines()
        .find_map(|line| line.split_once("Collected :")?.1.trim().parse().ok())
        .ok_or_else(|| format!("no `Collected :` line from callgrind:\n{stderr}"))?;
    Ok(ChildRun {
        instructions,
        commands,
    })
}

fn table(results: &[Measured], n: u64) -> String {
    let bare = results
        .iter()
        .find(|r| r.mode.name == "bare")
        .map(|r| r.per_request);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Instructions per request (callgrind; ({n} − {SMALL_N} requests) ÷ {})\n",
        n - SMALL_N
    );
    out.push_str(
        "| mode | request | instructions per request | × bare | Redis commands per request |\n",
    );
    out.push_str("|---|---|---:|---:|---|\n");
    for r in results {
        let ratio = bare.map_or(String::new(), |b| format!("{:.2}", r.per_request / b));
        let commands = if r.mode.redis {
            r.commands
                .iter()
                .map(|(name, calls)| {
                    format!("{:.2} {}", *calls as f64 / n as f64, name.to_uppercase())
                })
                .collect::<Vec<_>>()
                .join(", ")
        } else {
            String::new()
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {ratio} | {commands} |",
            r.mode.name,
            r.mode.description,
            thousands(r.per_request.round() as u64),
        );
    }
    out
}

// ---------------------------------------------------------------------------------
// The child: sets up one mode, warms it up, makes N requests.
// ---------------------------------------------------------------------------------

// `bare` and `get` are `bench::bare` and `bench::one_get`.

/// The cached modes: the bare handler, cached on the default cache.
#[cache_page(timeout = 3600, group = "bench")]
async fn cached() -> Response {
    page(BODY.clone())
}

fn child_main(args: &[String]) -> ExitCode {
    let parsed = match args {
        [name, n, port, ..] => mode(name).zip(n.parse().ok()).zip(port.parse().ok()),
        _ => None,
    };
    let Some(((mode, n), port)) = parsed else {
        eprintln!("usage: instructions --child MODE N PORT");
        return ExitCode::from(2);
    };
    match child(mode, n, port) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("{}: {err}", mode.name);
            ExitCode::FAILURE
        }
    }
}

fn child(mode: Mode, n: u64, port: u16) -> Result<(), String> {
    // One thread: the store's background tasks run on it while a request waits for
    // Redis or the warm-up sleeps, as everything else does, and are counted.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("no Tokio runtime: {e}"))?;
    rt.block_on(async {
        let url = format!("redis://127.0.0.1:{port}/");
        let app = router(mode, &url).await?;
        let mut parent = Parent::new();
        // The first requests each pause after, so that the work they leave to the
        // background (storing the page, making the tracking connection, learning the
        // page's versions) runs alone: interleaved with requests, it would leave the
        // heap laid out differently from run to run, and with it what malloc costs a
        // request (a Redis hit moved by over 1%). The first request is a miss that
        // stores the page.
        for _ in 0..PAUSED {
            request(&app, mode, false).await?;
            tokio::time::sleep(PAUSE).await;
        }
        // Batches until one makes Redis run its one command per request and nothing
        // else, as the parent tells from `INFO commandstats`: for `redis`, until the
        // tracking connection is up and has learnt the page's versions.
        if mode.commands.is_some() {
            loop {
                parent.ready(Parent::BATCH)?;
                for _ in 0..STEADY_BATCH {
                    request(&app, mode, true).await?;
                }
                match parent.ask(Parent::DONE)? {
                    Parent::STEADY => break,
                    // Lets the store's background tasks run.
                    Parent::AGAIN => tokio::time::sleep(PAUSE).await,
                    other => return Err(format!("the parent said {other:?}")),
                }
            }
        }
        for _ in 0..WARMUP {
            request(&app, mode, true).await?;
        }

        parent.ready(Parent::MEASURE)?;
        for _ in 0..n {
            request(&app, mode, true).await?;
        }
        parent.tell(Parent::DONE);
        Ok(())
    })
}

/// The child's side of the conversation with the parent, on stdin and stdout, around
/// batches of requests: the parent reads `INFO commandstats` before and after each.
/// The child reads nothing from Redis itself: a reply of `INFO`, whose length changes
/// from run to run, would lay the heap out differently each time.
struct Parent {
    line: String,
}

impl Parent {
    const BATCH: &str = "batch";
    const MEASURE: &str = "measure";
    const DONE: &str = "done";
    const GO: &str = "go";
    const STEADY: &str = "steady";
    const AGAIN: &str = "again";

    fn new() -> Parent {
        Parent {
            line: String::with_capacity(64),
        }
    }

    fn tell(&self, what: &str) {
        println!("{what}");
    }

    /// Says `what` and waits for the answer.
    fn ask(&mut self, what: &str) -> Result<&str, String> {
        self.tell(what);
        self.line.clear();
        match std::io::stdin().read_line(&mut self.line) {
            Ok(0) => Err("the parent hung up".to_owned()),
            Ok(_) => Ok(self.line.trim_end()),
            Err(e) => Err(format!("cannot read from the parent: {e}")),
        }
    }

    /// Says `what` and waits for `go`.
    fn ready(&mut self, what: &str) -> Result<(), String> {
        match self.ask(what)? {
            Parent::GO => Ok(()),
            other => Err(format!("the parent said {other:?}, not {:?}", Parent::GO)),
        }
    }
}

/// The router of `mode`, its cache installed and its Redis data written.
async fn router(mode: Mode, url: &str) -> Result<Router, String> {
    let e = |e: &dyn std::fmt::Display| e.to_string();
    let store = |tracked: bool, near_cache_bytes: Option<u64>| {
        let store = RedisStore::builder(url)
            .namespace("bench")
            .tracked_versions(tracked);
        // Longer than any run under callgrind: no hit sends a PING once warmed up.
        let store = if mode.name == "redis-lag" {
            store.invalidation_lag(Duration::from_secs(600))
        } else {
            store
        };
        let store = match near_cache_bytes {
            Some(bytes) => store.near_cache_bytes(bytes),
            None => store,
        };
        store.build().map_err(|x| e(&x))
    };
    let cache = match mode.name {
        "bare" => return Ok(Router::new().route("/page", get(bare))),
        "get" => {
            let client = redis::Client::open(url).map_err(|x| e(&x))?;
            let mut conn = client.get_connection_manager().await.map_err(|x| e(&x))?;
            let () = conn.set(BODY_KEY, BODY.as_ref()).await.map_err(|x| e(&x))?;
            return Ok(Router::new().route("/page", get(one_get)).with_state(conn));
        }
        "mem" | "mem-miss" => Cache::new(MemoryStore::new()),
        "redis" | "redis-miss" | "redis-lag" => Cache::new(store(true, None)?),
        "redis-get" => Cache::new(store(true, Some(0))?),
        "mget" => Cache::new(store(false, None)?),
        other => return Err(format!("unknown mode {other:?}")),
    };
    cache_page_runtime::install(cache).map_err(|x| e(&x))?;
    Ok(Router::new().route("/page", get(cached)))
}

/// `GET /page` through `app` (`/page?n=N`, a URL never asked before, in the miss
/// modes), its `Cache-Status` and body read whole; an error if it fails, or, once
/// `warm`, is not what the mode expects.
async fn request(app: &Router, mode: Mode, warm: bool) -> Result<(), String> {
    static NEXT_URL: AtomicU64 = AtomicU64::new(0);
    let uri = match mode.expect {
        Expect::Miss => format!("/page?n={}", NEXT_URL.fetch_add(1, Ordering::Relaxed)),
        Expect::Any | Expect::Hit => "/page".to_owned(),
    };
    let req = Request::builder()
        .uri(uri)
        .header(header::HOST, "bench.example")
        .body(Body::empty())
        .map_err(|e| e.to_string())?;
    let response = app.clone().oneshot(req).await.map_err(|e| e.to_string())?;
    let (parts, body) = response.into_parts();
    let cache_status = parts
        .headers
        .get("cache-status")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let says = |what: &str| cache_status.split(';').any(|p| p.trim() == what);
    let body = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
    if parts.status != StatusCode::OK || body.len() != BODY_LEN {
        return Err(format!(
            "expected 200 with the page, got {} with {} bytes",
            parts.status,
            body.len()
        ));
    }
    // After the warm-up, a miss in a hit mode, or a page not stored in a miss mode,
    // is the cache failing open (a lookup or store error, or a timeout).
    let expected = match mode.expect {
        Expect::Any => true,
        Expect::Hit => says("hit"),
        Expect::Miss => says("stored"),
    };
    if warm && !expected {
        return Err(format!(
            "expected a {:?}, got Cache-Status: {cache_status:?}",
            mode.expect
        ));
    }
    Ok(())
}

/// The commands whose calls grew from `before` to `after` (`INFO` left out), by how
/// much.
fn grown(before: &BTreeMap<String, u64>, after: &BTreeMap<String, u64>) -> BTreeMap<String, u64> {
    after
        .iter()
        .filter(|(name, _)| name.as_str() != "info")
        .filter_map(|(name, &calls)| {
            let grown = calls.saturating_sub(before.get(name).copied().unwrap_or(0));
            (grown > 0).then(|| (name.clone(), grown))
        })
        .collect()
}
