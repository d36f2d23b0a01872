//! What the benchmarks share, so that they serve and report the same page the same
//! way.

use std::sync::LazyLock;

use axum::{
    extract::State,
    http::{StatusCode, header},
    response::{IntoResponse, Response},
};
use bytes::Bytes;
use redis::{AsyncCommands, aio::ConnectionManager};

/// The length of the benchmarks' page.
pub const BODY_LEN: usize = 1024;

/// A body of `len` bytes of HTML list items.
pub fn body_of(len: usize) -> Bytes {
    let unit = b"<li class=\"product\">Widget</li>\n";
    Bytes::from(unit.iter().copied().cycle().take(len).collect::<Vec<u8>>())
}

/// The page every configuration serves: `body` as `text/html`.
pub fn page(body: Bytes) -> Response {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], body).into_response()
}

/// The benchmarks' page body, [`BODY_LEN`] bytes, made once.
pub static BODY: LazyLock<Bytes> = LazyLock::new(|| body_of(BODY_LEN));

/// Where [`one_get`] reads the body: the benchmark writes [`BODY`] there first.
pub const BODY_KEY: &str = "bench:body";

/// The bare handler: the page, with nothing else done.
pub async fn bare() -> Response {
    page(BODY.clone())
}

/// The handler doing one Redis `GET`: the body read from [`BODY_KEY`].
pub async fn one_get(State(mut conn): State<ConnectionManager>) -> Response {
    match conn.get::<_, Vec<u8>>(BODY_KEY).await {
        Ok(body) => page(Bytes::from(body)),
        Err(_) => StatusCode::BAD_GATEWAY.into_response(),
    }
}

/// `35100` as `35,100`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Waits for Ctrl-C (`SIGINT`) or `SIGTERM`, and returns the exit code a shell gives a
/// process stopped by it (130 or 143): the benchmarks then stop the processes they
/// started, whichever way they are asked to stop.
pub async fn stop_signal() -> u8 {
    use tokio::signal::unix::{SignalKind, signal};
    let terminate = async {
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                term.recv().await;
            }
            // Without the handler, only Ctrl-C stops the run cleanly.
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => 130,
        () = terminate => 143,
    }
}

/// This machine, as the benchmarks' reports name it: cores, CPU model, memory and
/// kernel, read from `/proc`.
pub fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")?
                .split_once(':')
                .map(|(_, v)| v.trim())
        })
        .unwrap_or("unknown CPU");
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_gib = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or_else(|| "?".to_owned(), |kb| format!("{:.1}", kb / 1048576.0));
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!(
        "{cores} cores ({cpu}), {mem_gib} GiB memory, Linux {}",
        kernel.trim()
    )
}
