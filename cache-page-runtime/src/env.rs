//! `Cache::from_env`: a cache configured from environment variables.

use std::time::Duration;

use crate::{Cache, Error, MemoryStore};

/// The variables [`Cache::from_env`] reads, with their defaults.
///
/// | variable                         | meaning                                            | default |
/// |----------------------------------|----------------------------------------------------|---------|
/// | `CACHE_PAGE_REDIS_URL`, `REDIS_URL` | the Redis to use (the first one set; without the `redis` feature, `REDIS_URL` is not read and `CACHE_PAGE_REDIS_URL` is an error); unset: in process | unset |
/// | `CACHE_PAGE_NAMESPACE`           | the namespace of every Redis key                   | `cache-page` |
/// | `CACHE_PAGE_COMMAND_TIMEOUT_MS`  | longest wait for one Redis command (above 0)       | `250` |
/// | `CACHE_PAGE_REDIS_TRACKING`      | `off`: hits read the versions too (one `MGET`), as behind a proxy that drops Redis's invalidation messages | `on` |
/// | `CACHE_PAGE_REDIS_NEAR_CACHE_BYTES` | most bytes of pages the Redis store keeps in process; `0`: none (a hit is one `GET`) | `33554432` |
/// | `CACHE_PAGE_REDIS_INVALIDATION_LAG_MS` | how long after an invalidation a hit on a page kept in process may still serve the old page (`0`: none; see `RedisStoreBuilder::invalidation_lag`) | `0` |
/// | `CACHE_PAGE_TIMEOUT_MS`          | longest wait for any store operation (above 0)     | `500` |
/// | `CACHE_PAGE_MAX_BODY_BYTES`      | largest body stored                                | `8388608` |
/// | `CACHE_PAGE_STATUS_HEADER`       | the cache's name in `Cache-Status`, or `off`       | `cache-page` |
/// | `CACHE_PAGE_LOCK_MS`             | turns on the lock across instances, with this wait (above 0) | off |
/// | `CACHE_PAGE_MEMORY_MAX_ENTRIES`  | in-process store: most entries                     | `10000` |
/// | `CACHE_PAGE_MEMORY_MAX_BYTES`    | in-process store: most bytes                       | `67108864` |
///
/// For instance, to show an operator what the service reads at start-up:
///
/// ```
/// use cache_page_runtime::ENV_VARIABLES;
///
/// for name in ENV_VARIABLES {
///     match std::env::var(name) {
///         Ok(value) => println!("{name}={value}"),
///         Err(_) => println!("{name} (unset: its default)"),
///     }
/// }
/// assert!(ENV_VARIABLES.contains(&"CACHE_PAGE_REDIS_URL"));
/// ```
pub const VARIABLES: &[&str] = &[
    "CACHE_PAGE_REDIS_URL",
    "REDIS_URL",
    "CACHE_PAGE_NAMESPACE",
    "CACHE_PAGE_COMMAND_TIMEOUT_MS",
    "CACHE_PAGE_REDIS_TRACKING",
    "CACHE_PAGE_REDIS_NEAR_CACHE_BYTES",
    "CACHE_PAGE_REDIS_INVALIDATION_LAG_MS",
    "CACHE_PAGE_TIMEOUT_MS",
    "CACHE_PAGE_MAX_BODY_BYTES",
    "CACHE_PAGE_STATUS_HEADER",
    "CACHE_PAGE_LOCK_MS",
    "CACHE_PAGE_MEMORY_MAX_ENTRIES",
    "CACHE_PAGE_MEMORY_MAX_BYTES",
];

impl Cache {
    /// A cache configured from the environment (see [`VARIABLES`] for the names and
    /// defaults): on Redis when `CACHE_PAGE_REDIS_URL` or `REDIS_URL` is set, in
    /// process otherwise.
    ///
    /// Fails with [`Error::InvalidConfig`] on a malformed value or a zero timeout,
    /// naming the variable (also one this configuration does not use, see
    /// [`from_vars`](Self::from_vars)); never because Redis is down (the connection is
    /// made on first use).
    ///
    /// ```
    /// # fn main() -> Result<(), cache_page_runtime::Error> {
    /// let cache = cache_page_runtime::Cache::from_env()?;
    /// cache_page_runtime::install(cache)?;
    /// # Ok(()) }
    /// ```
    pub fn from_env() -> Result<Cache, Error> {
        Self::from_vars(|name| std::env::var(name).ok().filter(|v| !v.is_empty()))
    }

    /// [`from_env`](Self::from_env) with the variables looked up by `var`.
    ///
    /// Every variable of [`VARIABLES`] that is set is checked, even one this
    /// configuration does not use (`CACHE_PAGE_COMMAND_TIMEOUT_MS` without a Redis
    /// URL, `CACHE_PAGE_MEMORY_MAX_BYTES` with one), so that a typo fails at start-up
    /// rather than when the setting is first needed. Timeouts must be above zero.
    ///
    /// ```
    /// use cache_page_runtime::{Cache, Error};
    ///
    /// let err = Cache::from_vars(|name| {
    ///     (name == "CACHE_PAGE_COMMAND_TIMEOUT_MS").then(|| "0".to_owned())
    /// })
    /// .unwrap_err();
    /// assert!(matches!(err, Error::InvalidConfig { variable, .. } if variable == "CACHE_PAGE_COMMAND_TIMEOUT_MS"));
    /// ```
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Cache, Error> {
        let invalid = |name: &str, value: String, reason: &str| Error::InvalidConfig {
            variable: name.to_owned(),
            value,
            reason: reason.to_owned(),
        };
        let number = |name: &str| -> Result<Option<u64>, Error> {
            var(name)
                .map(|value| match value.trim().parse::<u64>() {
                    Ok(n) => Ok(n),
                    Err(_) => Err(invalid(name, value, "not a whole number")),
                })
                .transpose()
        };
        // A wait of zero would time every operation out, or none, depending on
        // whether the store answers on its first poll: refused.
        let millis = |name: &str| -> Result<Option<Duration>, Error> {
            match number(name)? {
                Some(0) => Err(invalid(
                    name,
                    var(name).unwrap_or_default(),
                    "a wait of 0 ms is not allowed",
                )),
                n => Ok(n.map(Duration::from_millis)),
            }
        };

        // Read and checked first, whichever store they are for.
        let namespace = var("CACHE_PAGE_NAMESPACE");
        let command_timeout = millis("CACHE_PAGE_COMMAND_TIMEOUT_MS")?;
        let tracking = var("CACHE_PAGE_REDIS_TRACKING")
            .map(|value| match value.trim() {
                "on" | "true" | "1" => Ok(true),
                "off" | "false" | "0" => Ok(false),
                _ => Err(invalid(
                    "CACHE_PAGE_REDIS_TRACKING",
                    value,
                    "expected on or off",
                )),
            })
            .transpose()?;
        let near_cache_bytes = number("CACHE_PAGE_REDIS_NEAR_CACHE_BYTES")?;
        // Zero is the default here, not a wait that times everything out.
        let invalidation_lag =
            number("CACHE_PAGE_REDIS_INVALIDATION_LAG_MS")?.map(Duration::from_millis);
        let timeout = millis("CACHE_PAGE_TIMEOUT_MS")?;
        let max_body_bytes = number("CACHE_PAGE_MAX_BODY_BYTES")?;
        let lock_wait = millis("CACHE_PAGE_LOCK_MS")?;
        let max_entries = number("CACHE_PAGE_MEMORY_MAX_ENTRIES")?;
        let max_bytes = number("CACHE_PAGE_MEMORY_MAX_BYTES")?;

        // `REDIS_URL` is read only when `CACHE_PAGE_REDIS_URL` is unset: it may be set
        // for another program, in a form this one does not take. For the same reason a
        // build without the `redis` feature leaves it alone.
        let url = match var("CACHE_PAGE_REDIS_URL") {
            Some(url) => Some(("CACHE_PAGE_REDIS_URL", url)),
            None if cfg!(feature = "redis") => var("REDIS_URL").map(|url| ("REDIS_URL", url)),
            None => None,
        };
        let mut builder = match url {
            #[cfg(feature = "redis")]
            Some((name, url)) => {
                let mut store = crate::RedisStore::builder(url.as_str());
                if let Some(namespace) = namespace {
                    store = store.namespace(namespace);
                }
                if let Some(timeout) = command_timeout {
                    store = store.command_timeout(timeout);
                }
                if let Some(on) = tracking {
                    store = store.tracked_versions(on);
                }
                if let Some(bytes) = near_cache_bytes {
                    store = store.near_cache_bytes(bytes);
                }
                if let Some(lag) = invalidation_lag {
                    store = store.invalidation_lag(lag);
                }
                // Building fails only on a malformed URL.
                let store = store
                    .build()
                    .map_err(|_| invalid(name, redact_url(&url), NOT_A_REDIS_URL))?;
                Cache::builder(store)
            }
            #[cfg(not(feature = "redis"))]
            Some((name, url)) => {
                // Checked above, but there is no Redis store to give them to.
                let _ = (
                    namespace,
                    command_timeout,
                    tracking,
                    near_cache_bytes,
                    invalidation_lag,
                );
                return Err(invalid(
                    name,
                    redact_url(&url),
                    "this build has no `redis` feature",
                ));
            }
            None => {
                let mut store = MemoryStore::builder();
                if let Some(n) = max_entries {
                    store = store.max_entries(n);
                }
                if let Some(n) = max_bytes {
                    store = store.max_bytes(n);
                }
                Cache::builder(store.build())
            }
        };
        if let Some(timeout) = timeout {
            builder = builder.timeout(timeout);
        }
        if let Some(n) = max_body_bytes {
            builder = builder.max_body_bytes(usize::try_from(n).unwrap_or(usize::MAX));
        }
        if let Some(name) = var("CACHE_PAGE_STATUS_HEADER") {
            let name: &'static str = match name.as_str() {
                "off" | "none" | "false" => "",
                _ => Box::leak(name.into_boxed_str()),
            };
            builder = builder.cache_status((!name.is_empty()).then_some(name));
        }
        if let Some(wait) = lock_wait {
            builder = builder.lock_across_instances(wait);
        }
        Ok(builder.build())
    }
}

/// Why a Redis URL the store's builder refused is wrong.
#[cfg(feature = "redis")]
const NOT_A_REDIS_URL: &str =
    "not a Redis URL (redis://[user:password@]host[:port][/db], rediss://…, redis+unix:///path)";

/// A Redis URL with its passwords replaced by `***`, for logs and error messages: the
/// user information's (`redis://user:***@host`) and a `pass` or `password` query
/// parameter's (`redis+unix:///run/redis.sock?pass=***`).
///
/// It is meant for URLs that may be malformed (a URL that did not parse is the one an
/// error shows), so it relies on no parser: the user information ends at the last
/// `@`, wherever it is, and a string without a scheme is read as one without it.
/// When in doubt it hides more, never less.
///
/// ```
/// use cache_page_runtime::redact_url;
///
/// assert_eq!(redact_url("redis://app:hunter2@cache:6379/1"), "redis://app:***@cache:6379/1");
/// assert_eq!(redact_url("redis://cache:6379"), "redis://cache:6379");
/// assert_eq!(
///     redact_url("redis+unix:///run/redis.sock?db=1&pass=hunter2"),
///     "redis+unix:///run/redis.sock?db=1&pass=***"
/// );
/// // Malformed: a `/` in the password, no scheme.
/// assert_eq!(redact_url("redis://app:hun/ter2@cache"), "redis://app:***@cache");
/// assert_eq!(redact_url("app:hunter2@cache"), "app:***@cache");
/// ```
pub fn redact_url(url: &str) -> String {
    let (scheme, rest) = match url.split_once("://") {
        Some((scheme, rest)) => (Some(scheme), rest),
        None => (None, url),
    };
    let rest = match rest.rfind('@') {
        Some(at) => match rest[..at].find(':') {
            Some(colon) => format!("{}***{}", &rest[..=colon], &rest[at..]),
            None => rest.to_owned(),
        },
        None => rest.to_owned(),
    };
    let rest = match rest.split_once('?') {
        Some((path, query)) => {
            let query: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((name, _)) if name == "pass" || name == "password" => {
                        format!("{name}=***")
                    }
                    _ => pair.to_owned(),
                })
                .collect();
            format!("{path}?{}", query.join("&"))
        }
        None => rest,
    };
    match scheme {
        Some(scheme) => format!("{scheme}://{rest}"),
        None => rest,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn cache(vars: &[(&str, &str)]) -> Result<Cache, Error> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Cache::from_vars(|name| vars.get(name).cloned())
    }

    #[test]
    fn defaults_are_in_process() {
        let cache = cache(&[]).unwrap();
        assert!(format!("{:?}", cache.store()).starts_with("MemoryStore"));
        assert_eq!(cache.timeout(), Duration::from_millis(500));
        assert_eq!(cache.cache_status(), Some("cache-page"));
        assert_eq!(cache.lock_wait(), None);
    }

    #[cfg(feature = "redis")]
    #[tokio::test]
    async fn a_redis_url_selects_redis() {
        let cache = cache(&[
            ("REDIS_URL", "redis://127.0.0.1:1/"),
            ("CACHE_PAGE_NAMESPACE", "shop"),
        ])
        .unwrap();
        assert!(format!("{:?}", cache.store()).contains("\"shop\""));
        assert!(format!("{:?}", cache.store()).contains("tracked_versions: true"));
        assert!(format!("{:?}", cache.store()).contains("near_cache_bytes: 33554432"));
    }

    #[cfg(feature = "redis")]
    #[tokio::test]
    async fn the_near_cache_can_be_sized_or_turned_off() {
        for (value, shown) in [
            ("0", "near_cache_bytes: 0"),
            ("1024", "near_cache_bytes: 1024"),
        ] {
            let cache = cache(&[
                ("REDIS_URL", "redis://127.0.0.1:1/"),
                ("CACHE_PAGE_REDIS_NEAR_CACHE_BYTES", value),
            ])
            .unwrap();
            assert!(format!("{:?}", cache.store()).contains(shown));
        }
        let err = cache(&[
            ("REDIS_URL", "redis://127.0.0.1:1/"),
            ("CACHE_PAGE_REDIS_NEAR_CACHE_BYTES", "lots"),
        ])
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid value \"lots\" for CACHE_PAGE_REDIS_NEAR_CACHE_BYTES: not a whole number"
        );
    }

    #[cfg(feature = "redis")]
    #[tokio::test]
    async fn the_invalidation_lag_is_read_in_milliseconds() {
        let plain = cache(&[("REDIS_URL", "redis://127.0.0.1:1/")]).unwrap();
        assert!(format!("{:?}", plain.store()).contains("invalidation_lag: 0ns"));
        for (value, shown) in [
            ("0", "invalidation_lag: 0ns"),
            ("2", "invalidation_lag: 2ms"),
        ] {
            let cache = cache(&[
                ("REDIS_URL", "redis://127.0.0.1:1/"),
                ("CACHE_PAGE_REDIS_INVALIDATION_LAG_MS", value),
            ])
            .unwrap();
            assert!(format!("{:?}", cache.store()).contains(shown));
        }
        let err = cache(&[
            ("REDIS_URL", "redis://127.0.0.1:1/"),
            ("CACHE_PAGE_REDIS_INVALIDATION_LAG_MS", "1.5"),
        ])
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid value \"1.5\" for CACHE_PAGE_REDIS_INVALIDATION_LAG_MS: not a whole number"
        );
    }

    #[cfg(feature = "redis")]
    #[tokio::test]
    async fn tracking_can_be_turned_off() {
        let untracked = cache(&[
            ("REDIS_URL", "redis://127.0.0.1:1/"),
            ("CACHE_PAGE_REDIS_TRACKING", "off"),
        ])
        .unwrap();
        assert!(format!("{:?}", untracked.store()).contains("tracked_versions: false"));
        let err = cache(&[
            ("REDIS_URL", "redis://127.0.0.1:1/"),
            ("CACHE_PAGE_REDIS_TRACKING", "maybe"),
        ])
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid value \"maybe\" for CACHE_PAGE_REDIS_TRACKING: expected on or off"
        );
    }

    #[test]
    fn settings_are_read() {
        let cache = cache(&[
            ("CACHE_PAGE_TIMEOUT_MS", "100"),
            ("CACHE_PAGE_MAX_BODY_BYTES", "1024"),
            ("CACHE_PAGE_STATUS_HEADER", "off"),
            ("CACHE_PAGE_LOCK_MS", "2000"),
        ])
        .unwrap();
        assert_eq!(cache.timeout(), Duration::from_millis(100));
        assert_eq!(cache.max_body_bytes(), 1024);
        assert_eq!(cache.cache_status(), None);
        assert_eq!(cache.lock_wait(), Some(Duration::from_secs(2)));
    }

    #[test]
    fn a_bad_value_names_its_variable() {
        let err = cache(&[("CACHE_PAGE_TIMEOUT_MS", "soon")]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid value \"soon\" for CACHE_PAGE_TIMEOUT_MS: not a whole number"
        );
        assert!(cache(&[("CACHE_PAGE_REDIS_URL", "not a url")]).is_err());
    }

    fn invalid(err: Error) -> (String, String) {
        match err {
            Error::InvalidConfig {
                variable, value, ..
            } => (variable, value),
            other => panic!("not InvalidConfig: {other:?}"),
        }
    }

    #[cfg(feature = "redis")]
    #[test]
    fn a_malformed_redis_url_names_its_variable() {
        for name in ["CACHE_PAGE_REDIS_URL", "REDIS_URL"] {
            let err = cache(&[(name, "notaurl")]).unwrap_err();
            assert_eq!(
                err.to_string(),
                format!("invalid value \"notaurl\" for {name}: {NOT_A_REDIS_URL}")
            );
            assert_eq!(invalid(err), (name.to_owned(), "notaurl".to_owned()));
        }
        // CACHE_PAGE_REDIS_URL wins: REDIS_URL may be another program's.
        let err = cache(&[
            ("CACHE_PAGE_REDIS_URL", "nope"),
            ("REDIS_URL", "redis://h/"),
        ]);
        assert_eq!(invalid(err.unwrap_err()).0, "CACHE_PAGE_REDIS_URL");
    }

    #[cfg(feature = "redis")]
    #[test]
    fn a_malformed_redis_url_does_not_show_its_password() {
        let err = cache(&[("REDIS_URL", "redis://app:hunter2@host:99999/0")]).unwrap_err();
        assert_eq!(
            invalid(err),
            (
                "REDIS_URL".to_owned(),
                "redis://app:***@host:99999/0".to_owned()
            )
        );
    }

    #[cfg(not(feature = "redis"))]
    #[test]
    fn without_the_redis_feature_only_our_own_url_is_an_error() {
        // Ours asks for a store this build does not have: an error, password hidden.
        let err = cache(&[("CACHE_PAGE_REDIS_URL", "redis://app:hunter2@host/0")]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid value \"redis://app:***@host/0\" for CACHE_PAGE_REDIS_URL: \
             this build has no `redis` feature"
        );
        // `REDIS_URL` may be another program's: not read, the pages stay in process.
        let cache = cache(&[("REDIS_URL", "redis://127.0.0.1:1/")]).unwrap();
        assert!(format!("{:?}", cache.store()).starts_with("MemoryStore"));
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact_url("redis://app:hunter2@host:99999/0"),
            "redis://app:***@host:99999/0"
        );
        assert_eq!(redact_url("redis://host:1/0"), "redis://host:1/0");
        assert_eq!(redact_url("redis://user@host/"), "redis://user@host/");
        assert_eq!(redact_url("a:b@c"), "a:***@c");
        assert_eq!(
            redact_url("redis://:secret@cache:6379/1"),
            "redis://:***@cache:6379/1"
        );
        // An `@`, `/`, `?` or `#` in a password (a malformed URL) is hidden with it.
        for url in [
            "redis://app:s3:cr@t@cache/0",
            "redis://app:s3/cr?t@cache/0",
            "redis://app:s3#cr@cache/0",
        ] {
            assert_eq!(redact_url(url), "redis://app:***@cache/0", "{url}");
        }
        assert_eq!(
            redact_url("redis+unix:///run/redis.sock?db=1&pass=secret"),
            "redis+unix:///run/redis.sock?db=1&pass=***"
        );
        assert_eq!(
            redact_url("rediss://cache/0?password=secret&protocol=resp3"),
            "rediss://cache/0?password=***&protocol=resp3"
        );
        assert_eq!(redact_url("not a url"), "not a url");
    }

    #[test]
    fn unused_variables_are_checked_too() {
        // No Redis URL: the Redis variables are not used, but a typo is still one.
        for (name, value) in [
            ("CACHE_PAGE_COMMAND_TIMEOUT_MS", "abc"),
            ("CACHE_PAGE_REDIS_TRACKING", "maybe"),
            ("CACHE_PAGE_REDIS_NEAR_CACHE_BYTES", "lots"),
        ] {
            let err = cache(&[(name, value)]).unwrap_err();
            assert_eq!(invalid(err), (name.to_owned(), value.to_owned()));
        }
    }

    #[tokio::test]
    async fn unused_memory_variables_are_checked_with_redis() {
        for name in [
            "CACHE_PAGE_MEMORY_MAX_ENTRIES",
            "CACHE_PAGE_MEMORY_MAX_BYTES",
        ] {
            let err = cache(&[("REDIS_URL", "redis://127.0.0.1:1/"), (name, "many")]).unwrap_err();
            assert_eq!(invalid(err), (name.to_owned(), "many".to_owned()));
        }
    }

    #[test]
    fn a_zero_timeout_is_refused() {
        for name in [
            "CACHE_PAGE_TIMEOUT_MS",
            "CACHE_PAGE_COMMAND_TIMEOUT_MS",
            "CACHE_PAGE_LOCK_MS",
        ] {
            let err = cache(&[(name, "0")]).unwrap_err();
            assert_eq!(
                err.to_string(),
                format!("invalid value \"0\" for {name}: a wait of 0 ms is not allowed")
            );
            assert_eq!(invalid(err), (name.to_owned(), "0".to_owned()));
        }
        // Zero bytes is a size, not a timeout: the near cache turned off.
        assert!(cache(&[("CACHE_PAGE_REDIS_NEAR_CACHE_BYTES", "0")]).is_ok());
    }
}
