//! What can go wrong, as one line on stderr and an exit status.

use std::{fmt, io, process::ExitCode, time::Duration};

use cache_page_runtime::{
    Error,
    redis::{ErrorKind, RedisError},
};

/// An error of the CLI. [`Usage`](CliError::Usage) exits with 2, like clap's own
/// errors; everything else with 1.
#[derive(Debug)]
pub enum CliError {
    /// Bad input that clap could not see alone (a combination of arguments, a
    /// malformed Redis URL). Printed by clap, with the usage line.
    Usage(Box<clap::Error>),
    /// Redis could not be reached or did not answer in time.
    Unreachable { url: String, reason: String },
    /// Redis refused the credentials.
    Auth { url: String, detail: String },
    /// Redis answered with an error, or another store error.
    Redis { url: String, detail: String },
    /// Writing the output failed (other than a closed pipe).
    Output(io::Error),
    /// Standard output was closed by its reader (`cache-page list | head`): the
    /// command stops quietly, with exit status 0.
    Closed,
}

impl CliError {
    /// The error of a runtime call made against the Redis at `url` (redacted).
    pub fn from_runtime(url: &str, err: Error) -> CliError {
        match err {
            Error::Redis(err) => CliError::from_redis(url, &err),
            Error::Timeout(after) => CliError::timeout(url, after),
            other => CliError::Redis {
                url: url.to_owned(),
                detail: chain(&other),
            },
        }
    }

    /// The error of a Redis command sent to `url` (redacted).
    pub fn from_redis(url: &str, err: &RedisError) -> CliError {
        let url = url.to_owned();
        if let Some(io) = io_source(err) {
            return CliError::Unreachable {
                url,
                reason: io_reason(io),
            };
        }
        match err.kind() {
            ErrorKind::AuthenticationFailed => CliError::Auth {
                url,
                detail: err.to_string(),
            },
            _ if matches!(err.code(), Some("NOAUTH" | "WRONGPASS")) => CliError::Auth {
                url,
                detail: err.to_string(),
            },
            _ if err.is_connection_refusal() => CliError::Unreachable {
                url,
                reason: "connection refused".to_owned(),
            },
            _ if err.is_timeout() => CliError::Unreachable {
                url,
                reason: "timed out".to_owned(),
            },
            ErrorKind::Io => CliError::Unreachable {
                url,
                reason: without_os_error(&lowercase_first(&err.to_string())).to_owned(),
            },
            _ => CliError::Redis {
                url,
                detail: err.to_string(),
            },
        }
    }

    /// Redis did not answer within `after`.
    pub fn timeout(url: &str, after: Duration) -> CliError {
        CliError::Unreachable {
            url: url.to_owned(),
            reason: format!("no answer within {} ms", after.as_millis()),
        }
    }

    pub fn exit_code(&self) -> ExitCode {
        match self {
            CliError::Usage(_) => ExitCode::from(2),
            CliError::Closed => ExitCode::SUCCESS,
            _ => ExitCode::from(1),
        }
    }
}

impl fmt::Display for CliError {
    /// One line: whatever Redis or the OS said is folded onto it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let one_line = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
        match self {
            CliError::Usage(err) => write!(f, "{}", err.render()),
            CliError::Unreachable { url, reason } => {
                write!(f, "cannot reach Redis at {url}: {}", one_line(reason))
            }
            CliError::Auth { url, detail } => {
                write!(
                    f,
                    "Redis at {url} refused the credentials: {} (give them in the URL: \
                     redis://user:password@host:port)",
                    one_line(detail)
                )
            }
            CliError::Redis { url, detail } => {
                write!(
                    f,
                    "Redis at {url} answered with an error: {}",
                    one_line(detail)
                )
            }
            CliError::Output(err) => write!(f, "cannot write the output: {err}"),
            CliError::Closed => f.write_str("the output was closed"),
        }
    }
}

/// The I/O error under a Redis error, if it is one. redis-rs keeps it behind an
/// `Arc<dyn Error>`, which is itself the source.
fn io_source(err: &RedisError) -> Option<&io::Error> {
    type Shared = std::sync::Arc<dyn std::error::Error + Send + Sync>;
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(err);
    while let Some(err) = source {
        if let Some(io) = err.downcast_ref::<io::Error>() {
            return Some(io);
        }
        if let Some(io) = err
            .downcast_ref::<Shared>()
            .and_then(|shared| shared.downcast_ref::<io::Error>())
        {
            return Some(io);
        }
        source = err.source();
    }
    None
}

/// `connection refused`, not `Connection refused (os error 111)`.
fn io_reason(err: &io::Error) -> String {
    match err.kind() {
        io::ErrorKind::ConnectionRefused => "connection refused".to_owned(),
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => "timed out".to_owned(),
        io::ErrorKind::NotFound => "no such socket".to_owned(),
        io::ErrorKind::PermissionDenied => "permission denied".to_owned(),
        io::ErrorKind::ConnectionReset => "connection reset".to_owned(),
        io::ErrorKind::ConnectionAborted | io::ErrorKind::BrokenPipe => {
            "connection lost".to_owned()
        }
        io::ErrorKind::UnexpectedEof => "the server closed the connection".to_owned(),
        _ => without_os_error(&lowercase_first(&err.to_string())).to_owned(),
    }
}

/// `connection refused`, not `connection refused (os error 111)`.
fn without_os_error(text: &str) -> &str {
    match text.find(" (os error") {
        Some(i) => &text[..i],
        None => text,
    }
}

fn lowercase_first(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(c) => c.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// An error and its sources, `a: b: c`.
fn chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(err) = source {
        out.push_str(": ");
        out.push_str(&err.to_string());
        source = err.source();
    }
    out
}
