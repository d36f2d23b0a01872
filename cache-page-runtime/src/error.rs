//! The one error type of the crate.

use std::time::Duration;

/// Everything that can go wrong in cache-page.
///
/// On the request path none of these ever reaches the client: a store that fails or
/// times out is logged and the page is served uncached. They surface from the calls an
/// application makes itself: building a store or a cache (a malformed URL or
/// variable), installing one, and invalidations such as
/// [`invalidate_group`](crate::invalidate_group), so that business logic can tell an
/// invalidation that may not have happened.
///
/// An invalidation that fails before Redis is reached ([`Error::InvalidUrl`], a
/// refused connection) did not happen. One that fails after its command was sent
/// ([`Error::Timeout`], a connection lost while waiting) may or may not have taken
/// effect: the outcome is unknown. Calling it again is safe in both cases, as an
/// invalidation is idempotent in effect: a second bump only invalidates, once more,
/// pages already invalidated or stored since (see [`Error::is_timeout`]).
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
    /// Redis failed: a malformed URL given to a builder, a connection refused or
    /// lost, an error reply. Its text is part of this error's, as in `redis error:
    /// Connection refused (os error 111)`; it is not repeated as the
    /// [`source`](std::error::Error::source).
    ///
    /// A command Redis did not answer within the store's command timeout is an
    /// [`Error::Timeout`] instead.
    #[cfg(feature = "redis")]
    #[error("redis error: {0}")]
    Redis(redis::RedisError),

    /// The store did not answer within this time: the cache's timeout
    /// ([`CacheBuilder::timeout`](crate::CacheBuilder::timeout)) or, on Redis, the
    /// store's command timeout, whichever ran out first.
    ///
    /// For an invalidation the outcome is unknown: the command may have reached the
    /// store and taken effect, only its answer came too late. Calling it again is safe
    /// (an invalidation is idempotent in effect).
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
    #[error("invalid value {value:?} for {variable}: {reason}")]
    InvalidConfig {
        /// The variable.
        variable: String,
        /// Its value (a Redis URL's password replaced by `***`).
        value: String,
        /// Why it was refused, such as `not a whole number`.
        reason: String,
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

    /// An error from a user-provided [`Store`](crate::Store). Its text is part of
    /// this error's, as in `cache store error: disk full`; it is not repeated as the
    /// [`source`](std::error::Error::source) (match on this variant to reach it).
    #[error("cache store error: {0}")]
    Store(Box<dyn std::error::Error + Send + Sync>),
}

#[cfg(feature = "redis")]
impl From<redis::RedisError> for Error {
    fn from(err: redis::RedisError) -> Self {
        Error::Redis(err)
    }
}

impl Error {
    /// Whether the store did not answer in time ([`Error::Timeout`]), as opposed to
    /// failing at once (a broken connection, a refused command). After a timed-out
    /// invalidation the outcome is unknown: it may have taken effect.
    ///
    /// ```
    /// use std::time::Duration;
    /// use cache_page_runtime::Error;
    ///
    /// assert!(Error::Timeout(Duration::from_millis(250)).is_timeout());
    /// assert!(!Error::Unavailable.is_timeout());
    /// ```
    pub fn is_timeout(&self) -> bool {
        match self {
            Error::Timeout(_) => true,
            #[cfg(feature = "redis")]
            Error::Redis(e) => e.is_timeout(),
            _ => false,
        }
    }

    /// `self`, or [`Error::Timeout`] after `after` if it is a Redis command that
    /// redis-rs gave up on after its response timeout (`after`).
    pub(crate) fn timed_out_after(self, after: Duration) -> Error {
        #[cfg(not(feature = "redis"))]
        let _ = after;
        match self {
            #[cfg(feature = "redis")]
            Error::Redis(e) if e.is_timeout() => Error::Timeout(after),
            other => other,
        }
    }
}

/// A Redis store's operation, boxed, with a command that timed out (within the
/// store's response timeout, `after`) reported as [`Error::Timeout`], as when the
/// cache's own timeout runs out.
#[cfg(feature = "redis")]
pub(crate) fn timed<'a, T: 'a>(
    after: Duration,
    operation: impl Future<Output = Result<T, Error>> + Send + 'a,
) -> crate::BoxFuture<'a, Result<T, Error>> {
    Box::pin(async move { operation.await.map_err(|err| err.timed_out_after(after)) })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The error and its sources, `a: b: c`, as a reporter prints them.
    #[cfg(feature = "redis")]
    fn chain(err: &dyn std::error::Error) -> String {
        std::iter::successors(Some(err), |err| err.source())
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(": ")
    }

    #[cfg(feature = "redis")]
    #[test]
    fn a_redis_error_shows_its_cause_once() {
        let err = crate::RedisStore::open("nonsense").unwrap_err();
        assert!(matches!(err, Error::Redis(_)), "{err:?}");
        assert_eq!(
            err.to_string(),
            "redis error: Redis URL did not parse - InvalidClientConfig"
        );
        // In the text, so not again as the source: a reporter walking the chain
        // prints it once.
        assert!(std::error::Error::source(&err).is_none());
        assert_eq!(chain(&err), err.to_string());

        let refused = Error::from(redis::RedisError::from(std::io::Error::from(
            std::io::ErrorKind::ConnectionRefused,
        )));
        assert_eq!(refused.to_string(), "redis error: connection refused");
    }

    #[test]
    fn a_store_error_shows_its_cause_once() {
        let err = Error::Store("disk full".into());
        assert_eq!(err.to_string(), "cache store error: disk full");
        assert!(std::error::Error::source(&err).is_none());
    }
}
