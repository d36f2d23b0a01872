//! A miss: run the handler (alone, or as the leader of a flight, or under a lock
//! across instances) and store its response if the rules allow it.

use std::{
    sync::Arc,
    time::{Duration, SystemTime},
};

use axum::{
    body::Body,
    response::{IntoResponse, Response},
};
use bytes::Bytes;
use http::{HeaderValue, Method, StatusCode, header, request::Parts};
use http_body::Body as _;
use http_body_util::BodyExt;

use crate::{
    Cache, Entry, Error, PageConfig,
    entry::{Now, VaryIndex, unix_ms},
    flight::Landed,
    key::{body_tag, variant_hash},
    policy::{self, Uncacheable},
    request::Forward,
    respond::{Served, hit, is_not_modified, set_status},
    serve::{Target, find, usable, vary_values},
    store::Lookup,
    telemetry,
};

/// A miss: everything needed to run the handler and store its response. It owns its
/// parts so that a background refresh can take it along.
pub(crate) struct Miss {
    pub(crate) cache: Cache,
    pub(crate) config: &'static PageConfig,
    pub(crate) parts: Box<Parts>,
    /// The request's canonical URL: the origin its entry records.
    pub(crate) url: String,
    /// The flights' landing count when this request's lookup began.
    pub(crate) seq: u64,
    pub(crate) scopes: Vec<u64>,
    pub(crate) why: Forward,
}

/// How a leader's turn ended: it ran the handler, or found the page another instance
/// stored meanwhile.
enum Turn {
    Ran((Response, Option<Landed>)),
    Found(Miss, Arc<Entry>),
}

impl Miss {
    /// Runs the handler and stores its response.
    pub(crate) async fn run<F, R>(self, target: Target, handler: F) -> (Response, Option<Landed>)
    where
        F: Future<Output = R>,
        R: IntoResponse,
    {
        let response = handler.await.into_response();
        self.store(target, response).await
    }

    /// Runs the handler as the leader of this process's flight, and answers the
    /// request (see [`take_turn`](Self::take_turn)).
    pub(crate) async fn lead<F, R>(self, target: Target, handler: F) -> (Response, Option<Landed>)
    where
        F: Future<Output = R>,
        R: IntoResponse,
    {
        match self.take_turn(target, handler).await {
            Turn::Ran(out) => out,
            Turn::Found(miss, entry) => {
                let now = Now::read();
                let response = hit(&miss.cache, &entry, &miss.parts, Served::Collapsed, now);
                (response, Some(miss.landed(entry)))
            }
        }
    }

    /// Refreshes a page in the background: one past its timeout, or one a soft
    /// invalidation superseded, while the old one is served (see
    /// [`take_turn`](Self::take_turn): with a lock, one instance refreshes it and the
    /// others wait for its page). A refresh that fails stores nothing
    /// (stale-if-error).
    pub(crate) async fn refresh<F, R>(self, target: Target, handler: F) -> Option<Landed>
    where
        F: Future<Output = R>,
        R: IntoResponse,
    {
        match self.take_turn(target, handler).await {
            Turn::Ran((_, landed)) => landed,
            Turn::Found(miss, entry) => Some(miss.landed(entry)),
        }
    }

    /// Runs the handler, unless another instance builds the page. With a distributed
    /// lock configured, first takes the lock in the store; when another instance holds
    /// it, waits (boundedly) for that instance's entry instead of running the handler,
    /// and runs it only when the wait runs out.
    async fn take_turn<F, R>(self, target: Target, handler: F) -> Turn
    where
        F: Future<Output = R>,
        R: IntoResponse,
    {
        let Some(wait) = self.cache.lock_wait() else {
            return Turn::Ran(self.run(target, handler).await);
        };
        let cache = self.cache.clone();
        let hash = target.hash.clone();
        match cache.guarded(cache.store().lock(&hash, wait)).await {
            Ok(true) => {
                // Another instance may have stored the page and released the lock
                // between this request's lookup and its taking the lock.
                let turn = match self.stored_entry(&hash).await {
                    Some(entry) => Turn::Found(self, entry),
                    None => Turn::Ran(self.run(target, handler).await),
                };
                if let Err(err) = cache.guarded(cache.store().unlock(&hash)).await {
                    tracing::debug!(error = %err, "cache lock not released; it will expire");
                }
                turn
            }
            Ok(false) => match self.await_other_instance(&hash, wait).await {
                Some(entry) => Turn::Found(self, entry),
                None => Turn::Ran(self.run(target, handler).await),
            },
            Err(err) => {
                tracing::warn!(error = %err, "cache lock failed; running the handler");
                Turn::Ran(self.run(target, handler).await)
            }
        }
    }

    /// Polls the store for the entry another instance is building, for at most `wait`.
    async fn await_other_instance(&self, hash: &str, wait: Duration) -> Option<Arc<Entry>> {
        let deadline = tokio::time::Instant::now() + wait;
        let mut pause = Duration::from_millis(5);
        while tokio::time::Instant::now() < deadline {
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(50));
            if let Some(entry) = self.stored_entry(hash).await {
                return Some(entry);
            }
        }
        None
    }

    /// The entry now stored for this request's page, if it may be served.
    async fn stored_entry(&self, hash: &str) -> Option<Arc<Entry>> {
        let entry = self
            .cache
            .guarded(self.cache.store().get(hash))
            .await
            .ok()??;
        let lookup = Lookup {
            hash: hash.to_owned(),
            entry: Some(entry),
            scopes: self.scopes.clone(),
        };
        let now = Now::read();
        find(&self.cache, &lookup, &self.parts, &self.url, now)
            .await
            .entry()
            .filter(|entry| !entry.is_stale(now))
    }

    /// Whether this request may be served what another one stored: the same values of
    /// the headers it varies on, and fresh under this request's scope versions (so a
    /// request that started after an invalidation is never served a page from before).
    pub(crate) fn may_serve(&self, landed: &Landed) -> bool {
        let now = Now::read();
        landed.seq > self.seq
            && landed.matches(&self.parts)
            && usable(&landed.entry, &self.scopes, &self.url, now)
            && !landed.entry.is_stale(now)
    }

    pub(crate) fn landed(&self, entry: Arc<Entry>) -> Landed {
        let names = policy::vary_names_of(&entry.headers);
        let values = vary_values(&self.parts, &names)
            .into_iter()
            .map(|(_, v)| v)
            .collect();
        Landed {
            seq: 0,
            entry,
            names,
            values,
        }
    }

    fn refuse(
        &self,
        mut head: http::response::Parts,
        body: Body,
        why: Uncacheable,
    ) -> (Response, Option<Landed>) {
        telemetry::not_stored(why.as_str());
        if let Some(name) = self.cache.cache_status() {
            set_status(
                &mut head.headers,
                format_args!("{name}; fwd={}; detail={}", self.why.as_str(), why.as_str()),
            );
        }
        (Response::from_parts(head, body), None)
    }

    /// Stores `response` if the rules allow it, and returns it whole, with what
    /// followers may be served (nothing when it was not stored).
    async fn store(self, target: Target, response: Response) -> (Response, Option<Landed>) {
        let (mut head, body) = response.into_parts();
        let timeout = self.config.timeout.for_response(&head);
        if head.status == StatusCode::NOT_MODIFIED {
            // The handler answered a conditional request itself: pass it through with
            // the caching headers, never store it.
            if timeout > 0 && policy::check(&head.headers).is_ok() {
                policy::patch_headers(&mut head.headers, timeout, SystemTime::now());
            }
            return self.refuse(head, body, Uncacheable::NotModified);
        }
        if !self.config.statuses.contains(&head.status.as_u16()) {
            return self.refuse(head, body, Uncacheable::Status);
        }
        if let Err(why) = policy::check(&head.headers) {
            return self.refuse(head, body, why);
        }
        if timeout == 0 {
            return self.refuse(head, body, Uncacheable::ZeroTimeout);
        }
        // Only bodies of known length within the limit are buffered; a stream passes
        // through untouched.
        let len = match body.size_hint().exact() {
            Some(len) if len <= self.cache.max_body_bytes() as u64 => len,
            Some(_) => return self.refuse(head, body, Uncacheable::TooLarge),
            None => return self.refuse(head, body, Uncacheable::Streaming),
        };
        let bytes: Bytes = match body.collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(err) => {
                tracing::warn!(error = %err, "response body failed; not stored");
                let failed = futures_util::stream::once(std::future::ready(Err::<Bytes, _>(err)));
                return (Response::from_parts(head, Body::from_stream(failed)), None);
            }
        };
        // Never store a body shorter than it announced, or an empty answer to HEAD
        // (the handler may have left the body out): a later GET would be truncated.
        let declared = head
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        if bytes.len() as u64 != len
            || declared.is_some_and(|d| d != len)
            || (self.parts.method == Method::HEAD && bytes.is_empty())
        {
            return self.refuse(head, Body::from(bytes), Uncacheable::Truncated);
        }

        let now = SystemTime::now();
        policy::patch_headers(&mut head.headers, timeout, now);
        if !head.headers.contains_key(header::ETAG) {
            let etag = format!("\"{}\"", body_tag(&bytes));
            if let Ok(etag) = HeaderValue::from_str(&etag) {
                head.headers.insert(header::ETAG, etag);
            }
        }
        // Checked again now that the cache added its own headers: an entry keeps at
        // most MAX_HEADERS, and must keep these.
        if head.headers.len() > crate::entry::MAX_HEADERS {
            return self.refuse(head, Body::from(bytes), Uncacheable::TooManyHeaders);
        }
        let entry = Arc::new(Entry {
            status: head.status,
            headers: head
                .headers
                .iter()
                .filter(|(name, _)| policy::is_end_to_end(name))
                .map(|(n, v)| (n.clone(), v.clone()))
                .collect(),
            body: bytes.clone(),
            created_ms: unix_ms(now),
            ttl: Duration::from_secs(timeout),
            grace: Duration::from_secs(self.config.grace),
            origin: self.url.clone(),
            scopes: self.scopes.clone(),
            vary: None,
        });
        let tags: Vec<String> = self
            .config
            .tags
            .iter()
            .map(|t| t.resolve(&self.parts).into_owned())
            .collect();
        let stored = self.insert(target, entry.clone(), &tags).await;
        match &stored {
            Ok(()) => telemetry::stored(),
            // As a body over `max_body_bytes` is: served whole, said too large.
            Err(Error::TooLarge) => {
                return self.refuse(head, Body::from(bytes), Uncacheable::TooLarge);
            }
            Err(err) => telemetry::error("store", err),
        }
        if let Some(name) = self.cache.cache_status() {
            let why = self.why.as_str();
            match stored {
                Ok(()) => set_status(
                    &mut head.headers,
                    format_args!("{name}; fwd={why}; stored; ttl={timeout}"),
                ),
                Err(_) => set_status(&mut head.headers, format_args!("{name}; fwd={why}")),
            }
        }
        let landed = stored.is_ok().then(|| self.landed(entry));
        if head.status.is_success() && is_not_modified(&self.parts.headers, || head.headers.iter())
        {
            let mut not_modified = Response::new(Body::empty());
            *not_modified.status_mut() = StatusCode::NOT_MODIFIED;
            *not_modified.headers_mut() = head
                .headers
                .into_iter()
                .filter_map(|(n, v)| Some((n?, v)))
                .filter(|(n, _)| policy::kept_in_304(n) || n == "cache-status" || n == "age")
                .collect();
            return (not_modified, landed);
        }
        (Response::from_parts(head, Body::from(bytes)), landed)
    }

    /// Writes the entry where it belongs: at the page's hash when the response does
    /// not vary; otherwise at its variant's hash, under a vary index at the page's
    /// hash (a new one when the header list changed).
    async fn insert(
        &self,
        target: Target,
        entry: Arc<Entry>,
        tags: &[String],
    ) -> Result<(), Error> {
        let store = self.cache.store();
        let names = policy::vary_names_of(&entry.headers);
        if names.is_empty() {
            return self
                .cache
                .guarded(store.insert(&target.hash, entry, tags))
                .await;
        }
        let variant = match target.index {
            Some((index, variant)) if index.names == names => variant,
            _ => {
                let index = VaryIndex {
                    names,
                    nonce: crate::store::version_seed(),
                };
                let variant = variant_hash(
                    &target.hash,
                    index.nonce,
                    &vary_values(&self.parts, &index.names),
                );
                let index = Entry::vary_index(index, &entry);
                self.cache
                    .guarded(store.insert(&target.hash, Arc::new(index), tags))
                    .await?;
                variant
            }
        };
        self.cache
            .guarded(store.insert(&variant, entry, tags))
            .await
    }
}
