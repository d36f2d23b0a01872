//! A read barrier on the tracking connection, shared by the hits waiting at once.
//!
//! A hit served from the pages kept in process (see [`tracking`](crate::tracking))
//! must still know that no invalidation made before it began is on its way to us.
//! Redis writes an invalidation message into the tracking connection's stream when the
//! key changes, so the answer to any command sent after the change comes after the
//! message. A `PING` sent after a request began is such a command: once its `PONG` is
//! back, every invalidation that returned before the request began has been applied.
//!
//! One `PING` is out at a time. A hit needs one that was sent after it began: the next
//! one. Every hit that arrives while a `PING` is out waits for the next, so one round
//! trip confirms as many hits as arrived during the previous one. Before it sends, the
//! barrier's task lets the tasks already due run once (one `yield_now`), so that the
//! hits they begin ride on this `PING` too. Under load a hit costs Redis a fraction of
//! a command (0.03 in the load benchmark, 0.05 without the yield); alone, it costs one
//! `PING`. The hits waiting for the `PING` out and those waiting for the next one wait
//! on two `Notify`s (by the number's parity), so that answering one wakes only its own.
//!
//! With a lag (`RedisStoreBuilder::invalidation_lag`), a hit may instead be confirmed
//! by a `PING` sent up to that lag before it began: while the last answered one is
//! that recent, a hit passes at once, and asks for the next `PING` when the last one
//! sent is half a lag old, so that under steady hits none of them waits. An
//! invalidation is then seen by every request that begins more than the lag after it
//! returned, rather than by every one that begins after it.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU8, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use redis::aio::MultiplexedConnection;
use tokio::sync::Notify;

use crate::Error;

/// The barrier of one tracking connection.
pub(crate) struct Barrier {
    /// The number of the last `PING` whose sending began (the first is 1).
    sent: AtomicU64,
    /// The number of the last `PING` answered.
    answered: AtomicU64,
    /// The highest number a waiting hit needs.
    wanted: AtomicU64,
    state: AtomicU8,
    /// Wakes the task that sends the `PING`s.
    work: Notify,
    /// Wakes the hits when a `PING` is answered or the barrier breaks: those waiting
    /// for an even-numbered `PING` on the first, for an odd-numbered one on the second.
    /// The hits that arrive while a `PING` is out wait for the next one, so one
    /// `Notify` for all would wake them for nothing as the one out is answered.
    done: [Notify; 2],
    /// How long a `PING` may take, for the error of a timed-out one.
    timeout: Duration,
    /// Counts the `PING`s, as the store's round trips.
    round_trips: Arc<AtomicU64>,
    /// The instant the times below count from.
    origin: Instant,
    /// How long before a hit began the `PING` that confirms it may have been sent, in
    /// microseconds (zero: after it began).
    lag: u64,
    /// When the last `PING` began to be sent, in microseconds from `origin`.
    last_sent_at: AtomicU64,
    /// Until when, in microseconds from `origin`, a hit passes without waiting: the
    /// sending time of the last `PING` answered, plus `lag`. Zero once broken.
    passable_until: AtomicU64,
}

const OPEN: u8 = 0;
/// A `PING` failed: the connection is broken and the hits go elsewhere.
const FAILED: u8 = 1;
/// A `PING` timed out.
const TIMED_OUT: u8 = 2;
/// The connection was dropped or closed.
const CLOSED: u8 = 3;

impl Barrier {
    /// A barrier on `conn`: spawns the task that sends its `PING`s, which ends when
    /// the barrier is [`close`](Self::close)d or breaks.
    pub(crate) fn start(
        conn: MultiplexedConnection,
        timeout: Duration,
        lag: Duration,
        round_trips: Arc<AtomicU64>,
    ) -> Arc<Self> {
        let barrier = Arc::new(Barrier {
            sent: AtomicU64::new(0),
            answered: AtomicU64::new(0),
            wanted: AtomicU64::new(0),
            state: AtomicU8::new(OPEN),
            work: Notify::new(),
            done: [Notify::new(), Notify::new()],
            timeout,
            round_trips,
            origin: Instant::now(),
            lag: u64::try_from(lag.as_micros()).unwrap_or(u64::MAX),
            last_sent_at: AtomicU64::new(0),
            passable_until: AtomicU64::new(0),
        });
        tokio::spawn(Arc::clone(&barrier).send_pings(conn));
        barrier
    }

    /// Returns once a `PING` sent at most the barrier's lag before this call began is
    /// answered: every invalidation message written before that has then been handled.
    /// With a lag of zero, or when no answered `PING` is that recent, this is
    /// [`confirm`](Self::confirm). An error when the connection failed, timed out or
    /// was closed meanwhile.
    pub(crate) async fn pass(&self) -> Result<(), Error> {
        if self.lag > 0 {
            if self.recent_enough() {
                return Ok(());
            }
            crate::telemetry::lag_wait();
        }
        self.confirm().await
    }

    /// Whether a `PING` sent at most `lag` ago is answered, on an open barrier; if the
    /// last one sent is half a lag old, asks for the next, so that under steady hits
    /// the window moves on without any of them waiting.
    fn recent_enough(&self) -> bool {
        let now = self.micros();
        if now >= self.passable_until.load(Ordering::SeqCst)
            || self.state.load(Ordering::SeqCst) != OPEN
        {
            return false;
        }
        if now.saturating_sub(self.last_sent_at.load(Ordering::SeqCst)) >= self.lag / 2 {
            self.want(self.sent.load(Ordering::SeqCst) + 1);
        }
        true
    }

    /// Asks the barrier's task for `PING` number `n`, unless a hit already did.
    fn want(&self, n: u64) {
        // Read first: under load the hit before has nearly always asked for this PING
        // already, and a read leaves the line in both cores' caches where `fetch_max`
        // would take it from the other core on every hit.
        if self.wanted.load(Ordering::SeqCst) < n && self.wanted.fetch_max(n, Ordering::SeqCst) < n
        {
            self.work.notify_one();
        }
    }

    /// Returns once a `PING` sent after this call began is answered: every
    /// invalidation message written before it has then been handled. An error when
    /// the connection failed, timed out or was closed meanwhile.
    pub(crate) async fn confirm(&self) -> Result<(), Error> {
        // A `PING` numbered past the last one begun is begun after this load.
        let needed = self.sent.load(Ordering::SeqCst) + 1;
        self.want(needed);
        loop {
            if let Some(outcome) = self.outcome(needed) {
                return outcome;
            }
            let done = self.done[(needed % 2) as usize].notified();
            let mut done = std::pin::pin!(done);
            done.as_mut().enable();
            if let Some(outcome) = self.outcome(needed) {
                return outcome;
            }
            // Parked until the PING out now is answered or fails, then the next one:
            // within two command timeouts, whatever Redis does.
            std::future::poll_fn(|cx| {
                let poll = done.as_mut().poll(cx);
                if poll.is_pending() {
                    crate::cache::bounded_wait::set(self.timeout.saturating_mul(2));
                }
                poll
            })
            .await;
        }
    }

    fn micros(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    fn outcome(&self, needed: u64) -> Option<Result<(), Error>> {
        if self.answered.load(Ordering::SeqCst) >= needed {
            return Some(Ok(()));
        }
        match self.state.load(Ordering::SeqCst) {
            OPEN => None,
            TIMED_OUT => Some(Err(Error::Timeout(self.timeout))),
            _ => Some(Err(Error::Redis(redis::RedisError::from((
                redis::ErrorKind::Io,
                "the tracking connection broke",
            ))))),
        }
    }

    /// Stops the barrier: waiting hits get an error, and the task ends.
    pub(crate) fn close(&self) {
        self.stop(CLOSED);
    }

    fn stop(&self, state: u8) {
        let _ = self
            .state
            .compare_exchange(OPEN, state, Ordering::SeqCst, Ordering::SeqCst);
        self.passable_until.store(0, Ordering::SeqCst);
        for done in &self.done {
            done.notify_waiters();
        }
        self.work.notify_one();
    }

    async fn send_pings(self: Arc<Self>, mut conn: MultiplexedConnection) {
        loop {
            while self.wanted.load(Ordering::SeqCst) <= self.sent.load(Ordering::SeqCst) {
                if self.state.load(Ordering::SeqCst) != OPEN {
                    return;
                }
                self.work.notified().await;
            }
            // Let the tasks already due run first: the hits among them that begin now
            // can still be confirmed by this PING, rather than wait for the next.
            tokio::task::yield_now().await;
            if self.state.load(Ordering::SeqCst) != OPEN {
                return;
            }
            // Read only for a lag: the clock costs a lone strict hit 100 instructions.
            let sent_at = if self.lag > 0 {
                let now = self.micros();
                self.last_sent_at.store(now, Ordering::SeqCst);
                now
            } else {
                0
            };
            let number = self.sent.fetch_add(1, Ordering::SeqCst) + 1;
            self.round_trips.fetch_add(1, Ordering::Relaxed);
            let answer: Result<(), redis::RedisError> =
                redis::cmd("PING").query_async(&mut conn).await;
            match answer {
                Ok(()) => {
                    self.answered.store(number, Ordering::SeqCst);
                    if self.lag > 0 {
                        self.passable_until
                            .fetch_max(sent_at.saturating_add(self.lag), Ordering::SeqCst);
                    }
                    // Every hit waiting for an earlier PING of this parity was woken
                    // when that one was answered, before the next was sent.
                    self.done[(number % 2) as usize].notify_waiters();
                }
                Err(err) => {
                    tracing::debug!(error = %err, "the tracking connection's PING failed");
                    self.stop(if err.is_timeout() { TIMED_OUT } else { FAILED });
                    return;
                }
            }
        }
    }
}
