//! A circuit breaker around the store, for the request path.
//!
//! After `threshold` consecutive failures (errors or timeouts) the breaker *opens*:
//! requests stop calling the store and are served uncached at once, instead of each
//! waiting out the timeout. After `cooldown`, one request is let through as a probe;
//! its success closes the breaker, its failure opens it for another `cooldown`.

use std::{
    sync::{
        Mutex,
        atomic::{AtomicBool, AtomicU32, Ordering},
    },
    time::{Duration, Instant},
};

#[derive(Debug)]
pub(crate) struct Breaker {
    threshold: u32,
    cooldown: Duration,
    failures: AtomicU32,
    opened_at: Mutex<Option<Instant>>,
    probing: AtomicBool,
}

/// Whether a store call may go ahead.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Admit {
    /// The breaker is closed.
    Yes,
    /// The breaker is open and this call is its probe.
    Probe,
    /// The breaker is open.
    No,
}

impl Breaker {
    pub(crate) fn new(threshold: u32, cooldown: Duration) -> Self {
        Breaker {
            threshold: threshold.max(1),
            cooldown,
            failures: AtomicU32::new(0),
            opened_at: Mutex::new(None),
            probing: AtomicBool::new(false),
        }
    }

    pub(crate) fn is_open(&self) -> bool {
        self.failures.load(Ordering::Relaxed) >= self.threshold
    }

    pub(crate) fn admit(&self) -> Admit {
        if !self.is_open() {
            return Admit::Yes;
        }
        let opened_at = *self.opened_at.lock().unwrap_or_else(|e| e.into_inner());
        let cooled = opened_at.is_none_or(|t| t.elapsed() >= self.cooldown);
        if cooled
            && self
                .probing
                .compare_exchange(false, true, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        {
            return Admit::Probe;
        }
        Admit::No
    }

    /// Ends a probe that neither succeeded nor failed (its request was cancelled), so
    /// that the next request may probe.
    pub(crate) fn abandon(&self, admit: Admit) {
        if admit == Admit::Probe {
            self.probing.store(false, Ordering::Release);
        }
    }

    pub(crate) fn record(&self, admit: Admit, ok: bool) {
        if ok {
            // Read first: a success (nearly every call) then writes nothing, and the
            // counter's cache line is not taken from the other cores on every request.
            if self.failures.load(Ordering::Relaxed) == 0 {
                self.abandon(admit);
                return;
            }
            let before = self.failures.swap(0, Ordering::AcqRel);
            if before >= self.threshold {
                tracing::info!("cache store is back; circuit breaker closed");
                crate::telemetry::circuit(false);
            }
        } else {
            let failures = self
                .failures
                .fetch_add(1, Ordering::AcqRel)
                .saturating_add(1);
            if failures == self.threshold || admit == Admit::Probe {
                *self.opened_at.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
                if failures == self.threshold {
                    tracing::warn!(
                        failures,
                        cooldown_ms = self.cooldown.as_millis() as u64,
                        "cache store failing; circuit breaker open, serving uncached"
                    );
                    crate::telemetry::circuit(true);
                }
            }
        }
        if admit == Admit::Probe {
            self.probing.store(false, Ordering::Release);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_the_threshold_and_probes_after_the_cooldown() {
        let b = Breaker::new(3, Duration::ZERO);
        for _ in 0..2 {
            assert_eq!(b.admit(), Admit::Yes);
            b.record(Admit::Yes, false);
        }
        assert!(!b.is_open());
        b.record(Admit::Yes, false);
        assert!(b.is_open());
        // Cooldown zero: one probe at a time.
        assert_eq!(b.admit(), Admit::Probe);
        assert_eq!(b.admit(), Admit::No);
        b.record(Admit::Probe, false);
        assert!(b.is_open());
        assert_eq!(b.admit(), Admit::Probe);
        b.record(Admit::Probe, true);
        assert!(!b.is_open());
        assert_eq!(b.admit(), Admit::Yes);
    }

    #[test]
    fn an_abandoned_probe_lets_the_next_request_probe() {
        let b = Breaker::new(1, Duration::ZERO);
        b.record(Admit::Yes, false);
        assert_eq!(b.admit(), Admit::Probe);
        assert_eq!(b.admit(), Admit::No);
        b.abandon(Admit::Probe); // the probing request was cancelled
        assert_eq!(b.admit(), Admit::Probe);
    }

    #[test]
    fn stays_open_during_the_cooldown() {
        let b = Breaker::new(1, Duration::from_secs(3600));
        b.record(Admit::Yes, false);
        assert_eq!(b.admit(), Admit::No);
    }

    #[test]
    fn a_success_resets_the_count() {
        let b = Breaker::new(2, Duration::from_secs(3600));
        b.record(Admit::Yes, false);
        b.record(Admit::Yes, true);
        b.record(Admit::Yes, false);
        assert!(!b.is_open());
    }
}
