//! The one error type of the crate.

use std::time::Duration;

/// Everything that can go wrong in cache-page.
///
/// On the request path none of these ever reaches the client: a store that fails or
/// times out is logged and the page is served uncached. They surface only from calls
/// made by business logic, such as [`invalidate_group`](crate::invalidate_group), so
/// that it can tell an invalidation that did not happen.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use cache_page_runtime::{Cache, Error};
///
/// match Cache::memory().invalidate_url("http://[bad").await {
///     Err(Error::InvalidUrl(url)) => assert_eq!(url, "http://[bad"),
///     other => panic!("{other:?}"),
/// }
/// # }
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A Redis command failed (connection refused or lost, server error, bad URL).
    #[cfg(feature = "redis")]
    #[error("redis command failed")]
    Redis(#[source] redis::RedisError),

    /// The store did not answer within the configured command timeout.
    #[error("cache store did not answer within {0:?}")]
    Timeout(Duration),

    /// The store failed repeatedly and its circuit breaker is open: it is not called
    /// until the cooldown has passed.
    #[error("cache store unavailable (circuit breaker open)")]
    Unavailable,

    /// A default cache was installed already; it is installed once, at start-up.
    #[error("a default cache is already installed")]
    AlreadyInstalled,

    /// A handler or a call named a store that was never installed.
    #[error("no cache named {0:?} is installed")]
    UnknownCache(String),

    /// A configuration value (such as an environment variable read by
    /// [`Cache::from_env`](crate::Cache::from_env)) is malformed.
    #[error("invalid value {value:?} for {variable}")]
    InvalidConfig {
        /// The variable.
        variable: String,
        /// Its value.
        value: String,
    },

    /// A URL given to an invalidation could not be parsed.
    #[error("invalid URL {0:?}")]
    InvalidUrl(String),

    /// The store does not keep an entry this large: a
    /// [`MemoryStore`](crate::MemoryStore) keeps none larger than one of its shards
    /// (see [`MemoryStoreBuilder::max_bytes`](crate::MemoryStoreBuilder::max_bytes)).
    /// On the request path the page is served, and its `Cache-Status` says
    /// `detail=too-large`.
    #[error("the entry is larger than the store keeps")]
    TooLarge,

    /// A stored entry could not be decoded. It is treated as a miss and overwritten.
    #[error("stored entry is not a valid cache-page entry: {0}")]
    Corrupt(&'static str),

    /// An invalidation reached fewer replicas than
    /// `RedisClusterStoreBuilder::wait_for_replicas` asks for, within its timeout. It
    /// is in force on the node that took it, but a failover before the replicas catch
    /// up could lose it: call it again.
    #[error("the invalidation reached {acknowledged} of {wanted} replicas in time")]
    NotReplicated {
        /// The replicas asked for.
        wanted: u32,
        /// The replicas that acknowledged it.
        acknowledged: u32,
    },

    /// An error from a user-provided [`Store`](crate::Store).
    #[error("cache store failed")]
    Store(#[source] Box<dyn std::error::Error + Send + Sync>),
}

#[cfg(feature = "redis")]
impl From<redis::RedisError> for Error {
    fn from(err: redis::RedisError) -> Self {
        Error::Redis(err)
    }
}

#[cfg(feature = "redis")]
impl Error {
    /// Whether the store did not answer in time, as opposed to failing at once (a
    /// broken connection, a refused command).
    pub(crate) fn is_timeout(&self) -> bool {
        match self {
            Error::Timeout(_) => true,
            Error::Redis(e) => e.is_timeout(),
            _ => false,
        }
    }
}
