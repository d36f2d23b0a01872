//! What two cores serving the same page cost each other: an in-process hit through an
//! axum `Router`, on one thread and on two threads at once, next to the bare handler.
//!
//! ```sh
//! cargo bench -p cache-page-tests --bench contention   # about 30 s
//! ```
//!
//! Each thread has its own current-thread runtime and sends `/page` to the same
//! `Router` in a loop (no sockets, no load client). Two threads on two cores share
//! whatever the requests write: a reference count, a lock word. Each time a core writes
//! a cache line the other core wrote last, it waits for the line to come over. That
//! wait is what this measures: how much more a hit costs over the bare handler with two
//! threads than with one.
//!
//! The hit is measured twice, on a `MemoryStore` with each thread's own copies of the
//! pages it serves (the default) and on one without (`thread_copies(false)`), side by
//! side in the same rounds. The rounds take turns, and the medians over the rounds are
//! printed with their quartiles. The machine is shared and noisy, so only the
//! differences measured within one run mean anything.

use std::{sync::Barrier, time::Instant};

use axum::{
    Router,
    body::Body,
    http::{Request, StatusCode, header},
    response::Response,
    routing::get,
};
use cache_page_runtime::{Cache, MemoryStore, cache_page};
use cache_page_tests::bench::{self, BODY, bare, page};
use tower::ServiceExt as _;

// As the load benchmark's servers.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const ROUNDS: usize = 15;
const REQUESTS: usize = 100_000;

#[cache_page(timeout = 3600, group = "bench")]
async fn with_copies() -> Response {
    page(BODY.clone())
}

#[cache_page(timeout = 3600, group = "bench", store = "no-copies")]
async fn without_copies() -> Response {
    page(BODY.clone())
}

/// `n` requests for `/page`, one after the other, on this thread.
fn serve(app: &Router, n: usize) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    rt.block_on(async {
        for _ in 0..n {
            let request = Request::get("/page")
                .header(header::HOST, "127.0.0.1:8080")
                .body(Body::empty())
                .expect("a valid request");
            let response = app.clone().oneshot(request).await.expect("infallible");
            assert_eq!(response.status(), StatusCode::OK);
            std::hint::black_box(response);
        }
    });
}

/// Nanoseconds per request with `threads` threads serving at once (their mean).
fn per_request(app: &Router, threads: usize) -> f64 {
    let start = Barrier::new(threads);
    let each: Vec<f64> = std::thread::scope(|s| {
        let running: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    start.wait();
                    let t = Instant::now();
                    serve(app, REQUESTS);
                    t.elapsed().as_nanos() as f64 / REQUESTS as f64
                })
            })
            .collect();
        running
            .into_iter()
            .map(|t| t.join().expect("a serving thread"))
            .collect()
    });
    each.iter().sum::<f64>() / each.len() as f64
}

/// The median and quartiles of `xs`.
fn spread(mut xs: Vec<f64>) -> (f64, f64, f64) {
    xs.sort_by(f64::total_cmp);
    let at = |q: f64| xs[((xs.len() - 1) as f64 * q).round() as usize];
    (at(0.5), at(0.25), at(0.75))
}

fn main() {
    // `cargo test --benches` runs this without `--bench`: nothing to check then.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    cache_page_runtime::install(Cache::new(MemoryStore::new())).expect("the default cache");
    cache_page_runtime::install_named(
        "no-copies",
        Cache::new(MemoryStore::builder().thread_copies(false).build()),
    );
    let apps = [
        ("bare handler", Router::new().route("/page", get(bare))),
        (
            "hit, MemoryStore",
            Router::new().route("/page", get(with_copies)),
        ),
        (
            "hit, MemoryStore, thread_copies(false)",
            Router::new().route("/page", get(without_copies)),
        ),
    ];
    // The misses that store the pages, and a first round on each thread to copy them.
    for (_, app) in &apps {
        per_request(app, 2);
    }
    let mut one = vec![Vec::new(); apps.len()];
    let mut two = vec![Vec::new(); apps.len()];
    for round in 0..ROUNDS {
        let order: Vec<usize> = if round % 2 == 0 {
            (0..apps.len()).collect()
        } else {
            (0..apps.len()).rev().collect()
        };
        for &i in &order {
            one[i].push(per_request(&apps[i].1, 1));
            two[i].push(per_request(&apps[i].1, 2));
        }
        eprintln!("round {}/{ROUNDS}", round + 1);
    }
    println!(
        "{ROUNDS} rounds of {REQUESTS} requests per thread, in-process (no sockets); {}\n",
        bench::machine()
    );
    println!(
        "| | 1 thread, ns/request | 2 threads, ns/request | over the bare handler, 1 thread | over the bare handler, 2 threads | two threads add (the cores' waits) |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    for (i, (label, _)) in apps.iter().enumerate() {
        let (o, _, _) = spread(one[i].clone());
        let (t, _, _) = spread(two[i].clone());
        let over = |xs: &[Vec<f64>]| -> Vec<f64> {
            xs[i].iter().zip(&xs[0]).map(|(x, b)| x - b).collect()
        };
        let (o1, o1lo, o1hi) = spread(over(&one));
        let (t1, t1lo, t1hi) = spread(over(&two));
        let adds: Vec<f64> = over(&two)
            .iter()
            .zip(over(&one))
            .map(|(t, o)| t - o)
            .collect();
        let (a, alo, ahi) = spread(adds);
        if i == 0 {
            println!("| {label} | {o:.0} | {t:.0} | | | |");
        } else {
            println!(
                "| {label} | {o:.0} | {t:.0} | {o1:+.0} ({o1lo:.0}..{o1hi:.0}) | {t1:+.0} ({t1lo:.0}..{t1hi:.0}) | {a:+.0} ({alo:.0}..{ahi:.0}) |"
            );
        }
    }
    println!(
        "\nMedians of the rounds, with their quartiles in brackets; each \"over\" is taken within a round."
    );
}
