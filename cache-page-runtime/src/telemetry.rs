//! Metrics and trace events of the request path, in one place so that the names are
//! documented once.
//!
//! | metric                                | kind      | labels           |
//! |---------------------------------------|-----------|------------------|
//! | `cache_page_requests_total`           | counter   | `outcome`: `hit`, `stale`, `miss`, `collapsed`, `bypass` |
//! | `cache_page_stores_total`             | counter   | |
//! | `cache_page_not_stored_total`         | counter   | `reason`: `status`, `set-cookie`, `cache-control`, … |
//! | `cache_page_errors_total`             | counter   | `op`: `lookup`, `store`, `invalidate` |
//! | `cache_page_invalidations_total`      | counter   | `kind`: `group`, `path`, `url`, `prefix`, `tag`, `key` |
//! | `cache_page_lookup_duration_seconds`  | histogram | |
//! | `cache_page_circuit_open`             | gauge     | 1 while the store's circuit breaker is open |
//! | `cache_page_lag_waits_total`          | counter   | hits on a page a `RedisStore` keeps in process that found its `invalidation_lag` run out and waited for a `PING` (a lag too short for the `PING`'s round trip shows here) |
//!
//! With no `metrics` recorder installed, or without the `metrics` feature, these cost
//! nothing; trace events cost nothing when no subscriber listens at their level.

use std::time::Duration;

/// How a request was answered.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Outcome {
    Hit,
    Stale,
    Miss,
    Collapsed,
    Bypass,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Outcome::Hit => "hit",
            Outcome::Stale => "stale",
            Outcome::Miss => "miss",
            Outcome::Collapsed => "collapsed",
            Outcome::Bypass => "bypass",
        }
    }
}

pub(crate) fn request(outcome: Outcome) {
    tracing::trace!(outcome = outcome.as_str(), "cache-page request");
    // Literal labels: the keys are static, so counting allocates nothing.
    #[cfg(feature = "metrics")]
    {
        let counter = match outcome {
            Outcome::Hit => metrics::counter!("cache_page_requests_total", "outcome" => "hit"),
            Outcome::Stale => metrics::counter!("cache_page_requests_total", "outcome" => "stale"),
            Outcome::Miss => metrics::counter!("cache_page_requests_total", "outcome" => "miss"),
            Outcome::Collapsed => {
                metrics::counter!("cache_page_requests_total", "outcome" => "collapsed")
            }
            Outcome::Bypass => {
                metrics::counter!("cache_page_requests_total", "outcome" => "bypass")
            }
        };
        counter.increment(1);
    }
}

pub(crate) fn lookup_took(took: Duration) {
    #[cfg(feature = "metrics")]
    metrics::histogram!("cache_page_lookup_duration_seconds").record(took.as_secs_f64());
    let _ = took;
}

pub(crate) fn stored() {
    tracing::debug!("cache-page stored a response");
    #[cfg(feature = "metrics")]
    metrics::counter!("cache_page_stores_total").increment(1);
}

pub(crate) fn not_stored(reason: &'static str) {
    tracing::debug!(reason, "cache-page did not store a response");
    #[cfg(feature = "metrics")]
    metrics::counter!("cache_page_not_stored_total", "reason" => reason).increment(1);
}

/// A store operation failed: `op` is `lookup` (the request is served uncached),
/// `store` (the response was served but not stored) or `invalidate` (the caller gets
/// the error). The error's text carries its cause, such as `Connection refused`.
pub(crate) fn error(op: &'static str, err: &crate::Error) {
    match (op, err) {
        // While the breaker is open the store is not called; the breaker logged that once.
        (_, crate::Error::Unavailable) => {}
        // A name no cache was installed under: every request of its handlers would say
        // so, and the first one has.
        (_, crate::Error::UnknownCache(name)) if !first_time_unknown(name) => {
            tracing::debug!(op, error = %err, "cache-page serving uncached");
        }
        (_, crate::Error::UnknownCache(_)) => tracing::warn!(
            op,
            error = %err,
            "cache-page serving uncached the handlers that name this cache, until \
             `install_named` installs one (logged once per name)"
        ),
        ("invalidate", crate::Error::Timeout(_)) => tracing::warn!(
            op,
            error = %err,
            "cache-page invalidation timed out; it may or may not have taken effect"
        ),
        ("invalidate", _) => tracing::warn!(op, error = %err, "cache-page invalidation failed"),
        ("store", _) => tracing::warn!(
            op,
            error = %err,
            "cache-page could not store a response; it was served uncached"
        ),
        _ => tracing::warn!(op, error = %err, "cache-page store failed; serving uncached"),
    }
    #[cfg(feature = "metrics")]
    metrics::counter!("cache_page_errors_total", "op" => op).increment(1);
}

/// Whether `name` is reported as not installed for the first time.
fn first_time_unknown(name: &str) -> bool {
    static REPORTED: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    let mut reported = REPORTED.lock().unwrap_or_else(|e| e.into_inner());
    if reported.iter().any(|n| n == name) {
        return false;
    }
    // The names are the program's own (`store = "…"`), never a request's: few.
    reported.push(name.to_owned());
    true
}

pub(crate) fn invalidated(kind: &'static str, name: &str, version: u64) {
    tracing::debug!(kind, name, version, "cache-page invalidated");
    #[cfg(feature = "metrics")]
    metrics::counter!("cache_page_invalidations_total", "kind" => kind).increment(1);
}

/// A hit under an invalidation lag found no recent enough `PING`: it waits for one.
#[cfg(feature = "redis")]
pub(crate) fn lag_wait() {
    #[cfg(feature = "metrics")]
    metrics::counter!("cache_page_lag_waits_total").increment(1);
}

pub(crate) fn circuit(open: bool) {
    #[cfg(feature = "metrics")]
    metrics::gauge!("cache_page_circuit_open").set(if open { 1.0 } else { 0.0 });
    let _ = open;
}

#[cfg(test)]
mod tests {
    use std::{
        io,
        sync::{Arc, Mutex},
        time::Duration,
    };

    use crate::Error;

    #[derive(Clone, Default)]
    struct Logs(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Logs {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// What `super::error(op, err)` logs.
    fn logged(op: &'static str, err: &Error) -> String {
        let logs = Logs::default();
        let writer = logs.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, || super::error(op, err));
        String::from_utf8(logs.0.lock().unwrap().clone()).unwrap()
    }

    #[test]
    fn a_failure_is_logged_with_its_cause_and_what_it_means() {
        let err = Error::Store("connection refused".into());
        let lookup = logged("lookup", &err);
        assert!(lookup.contains("WARN"), "{lookup}");
        assert!(lookup.contains("serving uncached"), "{lookup}");
        assert!(lookup.contains("connection refused"), "{lookup}");

        let stored = logged("store", &err);
        assert!(stored.contains("could not store a response"), "{stored}");
        assert!(stored.contains("connection refused"), "{stored}");

        let invalidate = logged("invalidate", &err);
        assert!(invalidate.contains("invalidation failed"), "{invalidate}");
        assert!(invalidate.contains("connection refused"), "{invalidate}");
        assert!(!invalidate.contains("uncached"), "{invalidate}");

        let timeout = Error::Timeout(Duration::from_millis(250));
        let invalidate = logged("invalidate", &timeout);
        assert!(
            invalidate.contains("may or may not have taken effect"),
            "{invalidate}"
        );
        assert!(invalidate.contains("250ms"), "{invalidate}");

        // The breaker logged its opening once; each refused call is not logged.
        assert_eq!(logged("lookup", &Error::Unavailable), "");
    }

    #[test]
    fn a_cache_never_installed_is_reported_once_per_name() {
        let unknown = |name: &str| Error::UnknownCache(name.to_owned());
        let first = logged("lookup", &unknown("telemetry-unit-a"));
        assert!(first.contains("WARN"), "{first}");
        assert!(first.contains("\"telemetry-unit-a\""), "{first}");
        assert!(first.contains("install_named"), "{first}");
        for _ in 0..3 {
            let again = logged("lookup", &unknown("telemetry-unit-a"));
            assert!(!again.contains("WARN"), "reported again: {again}");
        }
        let other = logged("lookup", &unknown("telemetry-unit-b"));
        assert!(other.contains("WARN"), "{other}");
    }
}
