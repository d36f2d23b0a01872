//! `PageConfig`: everything the attribute says about a handler, as a value.

use std::{borrow::Cow, fmt};

use http::request::Parts;

use crate::key::{KeyFn, default_key};

/// How a handler's pages are cached: what `#[cache_page(...)]` expands to.
///
/// The attribute builds one per handler, once, and keeps it in a `static`. It can also
/// be built by hand.
///
/// ```
/// use cache_page_runtime::{PageConfig, keys};
///
/// let config = PageConfig::new(3600u64)
///     .key(keys::path_key)
///     .group("views")
///     .prefix("p");
/// # let _ = config;
/// ```
pub struct PageConfig {
    pub(crate) timeout: Timeout,
    pub(crate) key: Box<dyn KeyFn>,
    /// Whether `key` is [`default_key`], which a request can derive from its canonical
    /// URL instead of canonicalizing the query a second time.
    pub(crate) default_key: bool,
    pub(crate) groups: Vec<Part>,
    /// The groups as strings when none is computed: then a request needs not build
    /// them.
    pub(crate) fixed_groups: Option<Vec<String>>,
    pub(crate) prefix: Part,
    pub(crate) store: Option<&'static str>,
    pub(crate) statuses: Vec<u16>,
    pub(crate) only_if: Option<Box<Predicate>>,
    pub(crate) authorized: bool,
    pub(crate) tags: Vec<Part>,
    pub(crate) grace: u64,
}

impl fmt::Debug for PageConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PageConfig")
            .field("timeout", &self.timeout)
            .field("groups", &self.groups)
            .field("prefix", &self.prefix)
            .field("store", &self.store)
            .field("statuses", &self.statuses)
            .field("authorized", &self.authorized)
            .field("tags", &self.tags)
            .field("grace", &self.grace)
            .finish_non_exhaustive()
    }
}

/// A predicate on the request (`only_if`).
type Predicate = dyn Fn(&Parts) -> bool + Send + Sync;

/// A string that is either fixed or computed from the request.
#[doc(hidden)]
pub enum Part {
    Fixed(&'static str),
    Computed(Box<dyn KeyFn>),
}

impl fmt::Debug for Part {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Part::Fixed(s) => write!(f, "{s:?}"),
            Part::Computed(_) => f.write_str("<fn>"),
        }
    }
}

impl Part {
    pub(crate) fn resolve(&self, parts: &Parts) -> Cow<'static, str> {
        match self {
            Part::Fixed(s) => Cow::Borrowed(s),
            Part::Computed(f) => Cow::Owned(f(parts)),
        }
    }
}

/// A handler's timeout: fixed seconds or a function of the response. Not API:
/// reachable only through [`IntoTimeout`].
#[doc(hidden)]
pub enum Timeout {
    Secs(u64),
    Computed(Box<dyn Fn(&http::response::Parts) -> u64 + Send + Sync>),
}

impl fmt::Debug for Timeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Timeout::Secs(s) => write!(f, "{s}s"),
            Timeout::Computed(_) => f.write_str("<fn>"),
        }
    }
}

impl Timeout {
    /// The timeout in seconds for `response`; 0 means "do not store".
    pub(crate) fn for_response(&self, response: &http::response::Parts) -> u64 {
        match self {
            Timeout::Secs(s) => *s,
            Timeout::Computed(f) => f(response),
        }
    }
}

/// What `timeout = ...` accepts: a number of seconds, or a function of the response's
/// parts that returns seconds (0: do not store this response).
///
/// ```
/// use cache_page_runtime::PageConfig;
/// use cache_page_runtime::http::{StatusCode, response::Parts};
///
/// fn by_status(res: &Parts) -> u64 {
///     if res.status == StatusCode::NOT_FOUND { 60 } else { 3600 }
/// }
/// let _ = PageConfig::new(by_status);
/// let _ = PageConfig::new(60 * 15);
/// ```
pub trait IntoTimeout: sealed::Sealed {
    #[doc(hidden)]
    fn into_timeout(self) -> Timeout;
}

mod sealed {
    pub trait Sealed {}
}

macro_rules! int_timeouts {
    ($($t:ty),*) => {$(
        impl sealed::Sealed for $t {}
        impl IntoTimeout for $t {
            fn into_timeout(self) -> Timeout {
                // A negative number of seconds caches nothing, as 0 does.
                Timeout::Secs(u64::try_from(self).unwrap_or(0))
            }
        }
    )*};
}
int_timeouts!(u16, u32, u64, usize, i32, i64);

impl<F> sealed::Sealed for F where F: Fn(&http::response::Parts) -> u64 + Send + Sync + 'static {}
impl<F> IntoTimeout for F
where
    F: Fn(&http::response::Parts) -> u64 + Send + Sync + 'static,
{
    fn into_timeout(self) -> Timeout {
        Timeout::Computed(Box::new(self))
    }
}

impl PageConfig {
    /// A config with `timeout` and the defaults: [`default_key`], no group, no prefix,
    /// the default store.
    pub fn new(timeout: impl IntoTimeout) -> Self {
        PageConfig {
            timeout: timeout.into_timeout(),
            key: Box::new(default_key),
            default_key: true,
            groups: Vec::new(),
            fixed_groups: Some(Vec::new()),
            prefix: Part::Fixed(""),
            store: None,
            statuses: vec![200],
            only_if: None,
            authorized: false,
            tags: Vec::new(),
            grace: 0,
        }
    }

    /// The key function (default [`default_key`]).
    pub fn key(mut self, key: impl KeyFn) -> Self {
        self.key = Box::new(key);
        self.default_key = false;
        self
    }

    /// Adds a fixed group.
    pub fn group(mut self, group: &'static str) -> Self {
        self.groups.push(Part::Fixed(group));
        if let Some(fixed) = &mut self.fixed_groups {
            fixed.push(group.to_owned());
        }
        self
    }

    /// Adds a group computed from the request, such as one per tenant.
    pub fn group_fn(mut self, group: impl KeyFn) -> Self {
        self.groups.push(Part::Computed(Box::new(group)));
        self.fixed_groups = None;
        self
    }

    /// The groups of a request.
    pub(crate) fn resolve_groups(&self, parts: &Parts) -> Cow<'_, [String]> {
        match &self.fixed_groups {
            Some(fixed) => Cow::Borrowed(fixed),
            None => Cow::Owned(
                self.groups
                    .iter()
                    .map(|g| g.resolve(parts).into_owned())
                    .collect(),
            ),
        }
    }

    /// A fixed prefix.
    pub fn prefix(mut self, prefix: &'static str) -> Self {
        self.prefix = Part::Fixed(prefix);
        self
    }

    /// A prefix computed from the request.
    pub fn prefix_fn(mut self, prefix: impl KeyFn) -> Self {
        self.prefix = Part::Computed(Box::new(prefix));
        self
    }

    /// Uses the cache installed under `name` (see [`install_named`](crate::install_named)).
    pub fn store(mut self, name: &'static str) -> Self {
        self.store = Some(name);
        self
    }

    /// The statuses whose responses are stored (default `[200]`). Give a status its
    /// own timeout with a timeout function.
    ///
    /// Some statuses are never stored, and are dropped from the list: a `304` (it has
    /// no body to serve to others), a `206` (it holds part of a page, which would be
    /// served to requests for all of it), a `1xx` (not a final response) and any
    /// number that is not a status (below 100 or past 599).
    pub fn statuses(mut self, statuses: &[u16]) -> Self {
        self.statuses = statuses
            .iter()
            .copied()
            .filter(|s| (200..=599).contains(s) && *s != 206 && *s != 304)
            .collect();
        self
    }

    /// Serves from the cache only the requests for which `predicate` is true; the
    /// others bypass it (the seed's `only_if`).
    pub fn only_if(mut self, predicate: impl Fn(&Parts) -> bool + Send + Sync + 'static) -> Self {
        self.only_if = Some(Box::new(predicate));
        self
    }

    /// Caches requests that carry `Authorization` (by default they bypass the shared
    /// cache). Each caller then gets pages of their own: a digest of the credentials
    /// is part of the key, so no page is ever shared between callers.
    pub fn authorized(mut self, yes: bool) -> Self {
        self.authorized = yes;
        self
    }

    /// Adds a fixed tag. Deleting a tag ([`Cache::invalidate_tag`](crate::Cache::invalidate_tag))
    /// deletes its pages at once.
    pub fn tag(mut self, tag: &'static str) -> Self {
        self.tags.push(Part::Fixed(tag));
        self
    }

    /// Adds a tag computed from the request.
    pub fn tag_fn(mut self, tag: impl KeyFn) -> Self {
        self.tags.push(Part::Computed(Box::new(tag)));
        self
    }

    /// Seconds a page may still be served after its timeout while one request
    /// refreshes it (stale-while-revalidate), and served instead of a failed refresh
    /// (stale-if-error). Default 0.
    pub fn grace(mut self, seconds: u64) -> Self {
        self.grace = seconds;
        self
    }
}
