//! `Cache::from_env`: a cache configured from environment variables.

use std::time::Duration;

use crate::{Cache, Error, MemoryStore};

/// The variables [`Cache::from_env`] reads, with their defaults.
///
/// | variable                         | meaning                                            | default |
/// |----------------------------------|----------------------------------------------------|---------|
/// | `CACHE_PAGE_REDIS_URL`, `REDIS_URL` | the Redis to use (the first one set); unset: in process | unset |
/// | `CACHE_PAGE_NAMESPACE`           | the namespace of every Redis key                   | `cache-page` |
/// | `CACHE_PAGE_COMMAND_TIMEOUT_MS`  | longest wait for one Redis command                 | `250` |
/// | `CACHE_PAGE_REDIS_TRACKING`      | `off`: hits read the versions too (one `MGET`), as behind a proxy that drops Redis's invalidation messages | `on` |
/// | `CACHE_PAGE_REDIS_NEAR_CACHE_BYTES` | most bytes of pages the Redis store keeps in process; `0`: none (a hit is one `GET`) | `33554432` |
/// | `CACHE_PAGE_TIMEOUT_MS`          | longest wait for any store operation of a request  | `500` |
/// | `CACHE_PAGE_MAX_BODY_BYTES`      | largest body stored                                | `8388608` |
/// | `CACHE_PAGE_STATUS_HEADER`       | the cache's name in `Cache-Status`, or `off`       | `cache-page` |
/// | `CACHE_PAGE_LOCK_MS`             | turns on the lock across instances, with this wait | off |
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
    /// Fails on a malformed value, naming the variable; never because Redis is down
    /// (the connection is made on first use).
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
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Cache, Error> {
        let number = |name: &str| -> Result<Option<u64>, Error> {
            var(name)
                .map(|value| {
                    value
                        .trim()
                        .parse::<u64>()
                        .map_err(|_| Error::InvalidConfig {
                            variable: name.to_owned(),
                            value,
                        })
                })
                .transpose()
        };
        let millis = |name: &str| Ok::<_, Error>(number(name)?.map(Duration::from_millis));

        let url = var("CACHE_PAGE_REDIS_URL").or_else(|| var("REDIS_URL"));
        let mut builder = match url {
            #[cfg(feature = "redis")]
            Some(url) => {
                let mut store = crate::RedisStore::builder(url);
                if let Some(namespace) = var("CACHE_PAGE_NAMESPACE") {
                    store = store.namespace(namespace);
                }
                if let Some(timeout) = millis("CACHE_PAGE_COMMAND_TIMEOUT_MS")? {
                    store = store.command_timeout(timeout);
                }
                if let Some(value) = var("CACHE_PAGE_REDIS_TRACKING") {
                    let on = match value.trim() {
                        "on" | "true" | "1" => true,
                        "off" | "false" | "0" => false,
                        _ => {
                            return Err(Error::InvalidConfig {
                                variable: "CACHE_PAGE_REDIS_TRACKING".to_owned(),
                                value,
                            });
                        }
                    };
                    store = store.tracked_versions(on);
                }
                if let Some(bytes) = number("CACHE_PAGE_REDIS_NEAR_CACHE_BYTES")? {
                    store = store.near_cache_bytes(bytes);
                }
                Cache::builder(store.build()?)
            }
            #[cfg(not(feature = "redis"))]
            Some(value) => {
                return Err(Error::InvalidConfig {
                    variable: "REDIS_URL (this build has no `redis` feature)".to_owned(),
                    value,
                });
            }
            None => {
                let mut store = MemoryStore::builder();
                if let Some(n) = number("CACHE_PAGE_MEMORY_MAX_ENTRIES")? {
                    store = store.max_entries(n);
                }
                if let Some(n) = number("CACHE_PAGE_MEMORY_MAX_BYTES")? {
                    store = store.max_bytes(n);
                }
                Cache::builder(store.build())
            }
        };
        if let Some(timeout) = millis("CACHE_PAGE_TIMEOUT_MS")? {
            builder = builder.timeout(timeout);
        }
        if let Some(n) = number("CACHE_PAGE_MAX_BODY_BYTES")? {
            builder = builder.max_body_bytes(usize::try_from(n).unwrap_or(usize::MAX));
        }
        if let Some(name) = var("CACHE_PAGE_STATUS_HEADER") {
            let name: &'static str = match name.as_str() {
                "off" | "none" | "false" => "",
                _ => Box::leak(name.into_boxed_str()),
            };
            builder = builder.cache_status((!name.is_empty()).then_some(name));
        }
        if let Some(wait) = millis("CACHE_PAGE_LOCK_MS")? {
            builder = builder.lock_across_instances(wait);
        }
        Ok(builder.build())
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
            "invalid value \"lots\" for CACHE_PAGE_REDIS_NEAR_CACHE_BYTES"
        );
    }

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
            "invalid value \"maybe\" for CACHE_PAGE_REDIS_TRACKING"
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
            "invalid value \"soon\" for CACHE_PAGE_TIMEOUT_MS"
        );
        assert!(cache(&[("REDIS_URL", "not a url")]).is_err());
    }
}
