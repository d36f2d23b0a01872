//! What the cache captures from a request, and the extensions that steer it.

use axum::extract::{FromRequest, FromRequestParts, Request};
use http::{Method, request::Parts};

use crate::Cache;

/// A request extension that bypasses the cache: the handler runs and nothing is read
/// from or written to the cache for this request.
///
/// Any middleware or extractor that runs before the handler's last extractor can set it.
///
/// ```
/// use axum::{Router, extract::Request, middleware::{self, Next}, response::Response};
/// use cache_page_runtime::DoNotCache;
///
/// // Never cache pages for logged-in staff.
/// async fn staff_bypass(mut req: Request, next: Next) -> Response {
///     if req.headers().contains_key("x-staff") {
///         req.extensions_mut().insert(DoNotCache);
///     }
///     next.run(req).await
/// }
///
/// let app: Router = Router::new().layer(middleware::from_fn(staff_bypass));
/// # let _ = app;
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DoNotCache;

/// A request extension that forces a refresh: the cached page is not served; the
/// handler runs and its response replaces the entry (the seed's `_bust_cache`).
///
/// ```
/// use axum::extract::Request;
/// use cache_page_runtime::RefreshCache;
///
/// fn bust(req: &mut Request) {
///     req.extensions_mut().insert(RefreshCache);
/// }
/// # let _ = bust;
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RefreshCache;

/// What a cached handler knows of its request: nothing if the request bypasses the
/// cache, otherwise a copy of its head.
#[derive(Debug)]
pub struct CacheRequest(pub(crate) Capture);

#[derive(Debug)]
pub(crate) enum Capture {
    /// Not a GET or HEAD, or `DoNotCache` was set. The request's `Cache` extension, if
    /// any, names the cache in `Cache-Status`.
    Bypass { cache: Option<Cache>, why: Forward },
    /// A cacheable request: its head, and whether to refresh the entry.
    Lookup { parts: Box<Parts>, refresh: bool },
}

/// Why a request went to the handler (the `fwd` parameter of `Cache-Status`,
/// RFC 9211).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Forward {
    /// The method is not cacheable.
    Method,
    /// `DoNotCache`, `only_if`, or credentials the handler does not cache.
    Bypass,
    /// No entry for the URL.
    UriMiss,
    /// An entry for the URL, but not for these request headers.
    VaryMiss,
    /// `RefreshCache` asked for a fresh response.
    Request,
    /// The entry was stale (a background refresh).
    Stale,
}

impl Forward {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Forward::Method => "method",
            Forward::Bypass => "bypass",
            Forward::UriMiss => "uri-miss",
            Forward::VaryMiss => "vary-miss",
            Forward::Request => "request",
            Forward::Stale => "stale",
        }
    }
}

impl CacheRequest {
    /// Captures `req`'s head if the request may be served from the cache (a copy: the
    /// request goes on to a body extractor).
    pub fn capture(req: &Request) -> Self {
        if let Some(bypass) = Self::bypass(req.method(), req.extensions()) {
            return bypass;
        }
        let (mut parts, ()) = Request::new(()).into_parts();
        parts.method = req.method().clone();
        parts.uri = req.uri().clone();
        parts.version = req.version();
        parts.headers = req.headers().clone();
        parts.extensions = req.extensions().clone();
        Self::lookup(parts)
    }

    /// Takes a request head that nothing else needs any more, without copying it.
    pub fn from_parts(parts: Parts) -> Self {
        Self::bypass(&parts.method, &parts.extensions).unwrap_or_else(|| Self::lookup(parts))
    }

    fn bypass(method: &Method, extensions: &http::Extensions) -> Option<Self> {
        let why = if !matches!(*method, Method::GET | Method::HEAD) {
            Forward::Method
        } else if extensions.get::<DoNotCache>().is_some() {
            Forward::Bypass
        } else {
            return None;
        };
        let cache = extensions.get::<Cache>().cloned();
        Some(CacheRequest(Capture::Bypass { cache, why }))
    }

    fn lookup(parts: Parts) -> Self {
        let refresh = parts.extensions.get::<RefreshCache>().is_some();
        CacheRequest(Capture::Lookup {
            parts: Box::new(parts),
            refresh,
        })
    }
}

/// The extractor the attribute wraps a handler's last argument in: it captures the
/// request head for the cache, after every other extractor has run, and runs the
/// wrapped extractor.
#[derive(Debug)]
pub struct WithCache<T>(pub T, pub CacheRequest);

/// Marks [`WithCache`]'s impl for a last extractor that reads only the request head
/// (`FromRequestParts`): the head is handed to the cache after it ran, not copied.
#[derive(Debug)]
pub enum ViaCacheParts {}

/// Marks [`WithCache`]'s impl for a last extractor that reads the body: the head is
/// copied for the cache before the body extractor takes the request.
#[derive(Debug)]
pub enum ViaCacheRequest {}

impl<S, T> FromRequest<S, ViaCacheParts> for WithCache<T>
where
    S: Send + Sync,
    T: FromRequestParts<S>,
{
    type Rejection = T::Rejection;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let (mut parts, _) = req.into_parts();
        let inner = T::from_request_parts(&mut parts, state).await?;
        Ok(WithCache(inner, CacheRequest::from_parts(parts)))
    }
}

impl<S, T> FromRequest<S, ViaCacheRequest> for WithCache<T>
where
    S: Send + Sync,
    T: FromRequest<S>,
{
    type Rejection = T::Rejection;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let capture = CacheRequest::capture(&req);
        let inner = T::from_request(req, state).await?;
        Ok(WithCache(inner, capture))
    }
}
