//! Single flight: concurrent misses of one page run its handler once per process.
//!
//! The first request for a missing page becomes its *leader*; the others *follow*,
//! waiting (boundedly) for what the leader stored. A leader that panics or is
//! cancelled drops its guard, which wakes every follower: they then run the handler
//! themselves, so nobody waits forever.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use tokio::sync::watch;

use crate::Entry;

/// What a leader stored, and the values of the request headers the entry varies on
/// as the leader's request had them: a follower whose headers differ gets nothing.
#[derive(Clone, Debug)]
pub(crate) struct Landed {
    /// When it landed, in [`Flights::seq`] order: a request may take it only if it
    /// landed after that request's lookup began (the lookup may have missed it);
    /// one whose lookup began later saw the store itself, and if the entry was gone
    /// (deleted by a tag or key invalidation, damaged) must not be given a copy.
    pub(crate) seq: u64,
    pub(crate) entry: Arc<Entry>,
    pub(crate) names: Vec<http::HeaderName>,
    pub(crate) values: Vec<Option<String>>,
}

type Outcome = Option<Option<Landed>>;

/// The flights under way, by page hash, and what the last ones landed.
///
/// A request whose lookup started before a flight stored its entry, but which asks to
/// join after the flight ended, would start a second flight and run the handler again.
/// `recent` keeps what flights landed for a few seconds, so that such a request is
/// served what was just stored instead.
///
/// Both are keyed by page hashes (md5 digests, which a client cannot choose), so they
/// use foldhash rather than SipHash. `recent` is a quick_cache cache that checks the
/// age of what it holds on read: a TTL kept by the cache itself (moka's, as it was)
/// cost every miss a clock read and a queued task for its housekeeping. What is older
/// than that is swept out at most once per [`RECENT_FOR`], by a landing: left to the
/// cache's bound of entries, it held on to 10,000 pages per cache (20 MiB in the soak
/// benchmark, where moka's TTL had kept it to a few seconds' worth).
#[derive(Debug)]
pub(crate) struct Flights {
    map: Mutex<HashMap<String, watch::Receiver<Outcome>, foldhash::fast::RandomState>>,
    recent: Recent,
    /// When `recent` was last swept.
    swept: Mutex<Instant>,
    landings: AtomicU64,
}

type Recent = quick_cache::sync::Cache<
    String,
    (Instant, Landed),
    quick_cache::UnitWeighter,
    foldhash::fast::RandomState,
>;

/// How long what a flight landed is remembered.
const RECENT_FOR: Duration = Duration::from_secs(5);

impl Default for Flights {
    fn default() -> Self {
        Flights {
            map: Mutex::default(),
            swept: Mutex::new(Instant::now()),
            landings: AtomicU64::new(0),
            recent: Recent::with_options(
                quick_cache::OptionsBuilder::new()
                    .estimated_items_capacity(10_000)
                    .weight_capacity(10_000)
                    .build()
                    .expect("both capacities are set"),
                quick_cache::UnitWeighter,
                foldhash::fast::RandomState::default(),
                Default::default(),
            ),
        }
    }
}

pub(crate) enum Join {
    Leader(Leader),
    Follower(Follower),
}

/// Held by the request that runs the handler. Dropping it ends the flight.
pub(crate) struct Leader {
    flights: Arc<Flights>,
    key: String,
    tx: watch::Sender<Outcome>,
}

pub(crate) struct Follower(watch::Receiver<Outcome>);

impl Flights {
    /// Joins the flight for `key`, or starts one.
    pub(crate) fn join(self: &Arc<Self>, key: &str) -> Join {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(rx) = map.get(key) {
            return Join::Follower(Follower(rx.clone()));
        }
        let (tx, rx) = watch::channel(None);
        map.insert(key.to_owned(), rx);
        Join::Leader(Leader {
            flights: self.clone(),
            key: key.to_owned(),
            tx,
        })
    }

    /// The number of landings so far: read before a lookup, compared with
    /// [`Landed::seq`].
    pub(crate) fn seq(&self) -> u64 {
        self.landings.load(Ordering::SeqCst)
    }

    /// What the last flight for `key` landed, if it ended in the last few seconds.
    pub(crate) fn recent(&self, key: &str) -> Option<Landed> {
        let (at, landed) = self.recent.get(key)?;
        (at.elapsed() < RECENT_FOR).then_some(landed)
    }

    /// Remembers what a flight for `key` landed at `at`, and sweeps out what landed
    /// [`RECENT_FOR`] before `at` if that was not done in the last [`RECENT_FOR`].
    fn remember(&self, key: String, landed: Landed, at: Instant) {
        self.recent.insert(key, (at, landed));
        let Ok(mut swept) = self.swept.try_lock() else {
            return; // another landing is sweeping
        };
        if at.saturating_duration_since(*swept) < RECENT_FOR {
            return;
        }
        *swept = at;
        drop(swept);
        self.recent
            .retain(|_, (landed_at, _)| at.saturating_duration_since(*landed_at) < RECENT_FOR);
    }

    /// Number of flights under way (for tests and metrics).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.map.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

impl Leader {
    /// Tells the followers what was stored (`None`: nothing they may use).
    /// Passes on what an earlier flight landed, as it is: it keeps its sequence number
    /// and is not remembered again, so a copy can never keep itself alive.
    pub(crate) fn relay(self, landed: Landed) {
        self.tx.send_replace(Some(Some(landed)));
    }

    pub(crate) fn land(self, mut landed: Option<Landed>) {
        let seq = self.flights.landings.fetch_add(1, Ordering::SeqCst) + 1;
        if let Some(landed) = &mut landed {
            landed.seq = seq;
            self.flights
                .remember(self.key.clone(), landed.clone(), Instant::now());
        }
        self.tx.send_replace(Some(landed));
    }
}

impl Drop for Leader {
    fn drop(&mut self) {
        let mut map = self.flights.map.lock().unwrap_or_else(|e| e.into_inner());
        if map
            .get(&self.key)
            .is_some_and(|rx| rx.same_channel(&self.tx.subscribe()))
        {
            map.remove(&self.key);
        }
    }
}

/// What a follower's wait ended with.
#[derive(Debug)]
pub(crate) enum Waited {
    /// The leader finished: what it stored (`None`: nothing followers may use).
    Landed(Option<Landed>),
    /// The leader went away without finishing (it panicked or was cancelled).
    LeaderGone,
    /// The wait ran out.
    TimedOut,
}

impl Follower {
    /// Waits at most `wait` for the leader.
    pub(crate) async fn wait(mut self, wait: Duration) -> Waited {
        match tokio::time::timeout(wait, self.0.wait_for(Option::is_some)).await {
            Ok(Ok(outcome)) => Waited::Landed(outcome.clone().flatten()),
            Ok(Err(_)) => Waited::LeaderGone,
            Err(_) => Waited::TimedOut,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn followers_get_what_the_leader_landed() {
        let flights = Arc::new(Flights::default());
        let Join::Leader(leader) = flights.join("k") else {
            panic!("first is the leader")
        };
        let Join::Follower(follower) = flights.join("k") else {
            panic!("second follows")
        };
        let waiting = tokio::spawn(follower.wait(Duration::from_secs(10)));
        leader.land(None);
        assert!(matches!(waiting.await.unwrap(), Waited::Landed(None)));
        assert_eq!(flights.len(), 0);
        assert!(matches!(flights.join("k"), Join::Leader(_)));
    }

    fn landed(body: &'static str) -> Landed {
        let entry = Entry {
            status: http::StatusCode::OK,
            headers: vec![],
            body: bytes::Bytes::from_static(body.as_bytes()),
            created_ms: 0,
            ttl: Duration::from_secs(60),
            grace: Duration::ZERO,
            origin: "/".to_owned(),
            scopes: vec![],
            vary: None,
        };
        Landed {
            seq: 1,
            entry: Arc::new(entry),
            names: vec![],
            values: vec![],
        }
    }

    #[test]
    fn what_landed_long_ago_is_swept_out_by_a_later_landing() {
        let flights = Flights::default();
        let start = Instant::now();
        flights.remember("old".to_owned(), landed("old"), start);
        flights.remember(
            "newer".to_owned(),
            landed("newer"),
            start + Duration::from_secs(1),
        );
        assert_eq!(flights.recent.len(), 2, "nothing is old enough yet");
        // A landing more than RECENT_FOR after the last sweep (made when the flights
        // were made) sweeps what landed RECENT_FOR before it, and only that.
        let later = start + RECENT_FOR + Duration::from_millis(500);
        flights.remember("new".to_owned(), landed("new"), later);
        let mut kept: Vec<String> = flights.recent.iter().map(|(k, _)| k).collect();
        kept.sort();
        assert_eq!(kept, ["new", "newer"]);
        // The next sweep is due RECENT_FOR after this one, not before.
        let soon = later + Duration::from_secs(1);
        flights.remember("soon".to_owned(), landed("soon"), soon);
        assert_eq!(flights.recent.len(), 3, "swept once per period at most");
    }

    #[tokio::test]
    async fn a_dropped_leader_releases_its_followers() {
        let flights = Arc::new(Flights::default());
        let Join::Leader(leader) = flights.join("k") else {
            panic!("first is the leader")
        };
        let Join::Follower(follower) = flights.join("k") else {
            panic!("second follows")
        };
        let waiting = tokio::spawn(follower.wait(Duration::from_secs(3600)));
        drop(leader); // a panic or a cancelled request
        assert!(matches!(waiting.await.unwrap(), Waited::LeaderGone));
        assert_eq!(flights.len(), 0);
    }
}
