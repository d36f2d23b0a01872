//! Pieces shared by the cache-page examples: logging set-up, a listener, and the
//! [`catalogue`] app that `examples/catalogue.rs` serves.

pub mod catalogue;

use std::net::SocketAddr;

/// Starts logging at `info` (or as `RUST_LOG` says).
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,cache_page_runtime=debug"));
    tracing_subscriber::fmt().with_env_filter(filter).init();
}

/// Binds `127.0.0.1:$PORT` (default `default_port`).
pub async fn listen(default_port: u16) -> std::io::Result<(tokio::net::TcpListener, SocketAddr)> {
    let port = std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(default_port);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    let addr = listener.local_addr()?;
    Ok((listener, addr))
}
