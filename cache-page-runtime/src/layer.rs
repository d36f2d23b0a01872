//! `CachePageLayer`: the attribute's caching as a tower layer, for whole routers or
//! nested routes.

use std::{
    convert::Infallible,
    fmt,
    task::{Context, Poll},
};

use axum::{
    extract::Request,
    response::{IntoResponse, Response},
};
use futures_util::future::BoxFuture;
use tower::{Layer, Service, ServiceExt as _};

use crate::{PageConfig, request::CacheRequest, serve::serve};

/// Caches the responses of every route below it, with the same options, stores, keys,
/// groups and invalidation as `#[cache_page]`: for the same request and the same
/// [`PageConfig`], the layer and the attribute use the same entry.
///
/// ```
/// use axum::{Router, routing::get};
/// use cache_page_runtime::{CachePageLayer, PageConfig, keys};
///
/// let docs = Router::new()
///     .route("/docs/{*page}", get(|| async { "a rendered page" }))
///     .layer(CachePageLayer::new(PageConfig::new(600u64).key(keys::path_key).group("docs")));
/// # let _: Router = docs;
/// ```
///
/// The layer runs before the routes' extractors, so only middleware outside it can set
/// [`DoNotCache`](crate::DoNotCache) for a request. Its configuration is allocated
/// once, when the layer is made, and lives for the rest of the program (as a
/// handler's does): make layers at start-up, not per request.
#[derive(Clone, Copy)]
pub struct CachePageLayer {
    config: &'static PageConfig,
}

impl fmt::Debug for CachePageLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CachePageLayer")
            .field("config", self.config)
            .finish()
    }
}

impl CachePageLayer {
    /// A layer caching with `config`.
    pub fn new(config: PageConfig) -> Self {
        CachePageLayer {
            config: Box::leak(Box::new(config)),
        }
    }

    /// A layer sharing a configuration that lives for the whole program, such as one
    /// kept in a `static`.
    pub fn from_static(config: &'static PageConfig) -> Self {
        CachePageLayer { config }
    }
}

impl<S> Layer<S> for CachePageLayer {
    type Service = CachePage<S>;

    fn layer(&self, inner: S) -> Self::Service {
        CachePage {
            inner,
            config: self.config,
        }
    }
}

/// The service made by [`CachePageLayer`]: it wraps any service that takes an axum
/// [`Request`] and answers a [`Response`], and serves that service's pages from the
/// cache.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use axum::{body::Body, extract::Request, http::StatusCode, routing::get};
/// use cache_page_runtime::{Cache, CachePageLayer, PageConfig};
/// use tower::{Layer, ServiceExt};
///
/// let inner = get(|| async { "a rendered page" }).with_state(());
/// let cached = CachePageLayer::new(PageConfig::new(60u64)).layer(inner);
///
/// // This request brings its own cache, as a router's `Extension` layer would.
/// let cache = Cache::memory();
/// for status in ["miss", "hit"] {
///     let request = Request::get("/page")
///         .extension(cache.clone())
///         .body(Body::empty())
///         .unwrap();
///     let response = cached.clone().oneshot(request).await.unwrap();
///     assert_eq!(response.status(), StatusCode::OK);
///     let cache_status = response.headers()["cache-status"].to_str().unwrap();
///     assert!(cache_status.contains(if status == "hit" { "; hit" } else { "stored" }));
/// }
/// # }
/// ```
#[derive(Clone)]
pub struct CachePage<S> {
    inner: S,
    config: &'static PageConfig,
}

impl<S: fmt::Debug> fmt::Debug for CachePage<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CachePage")
            .field("inner", &self.inner)
            .field("config", self.config)
            .finish()
    }
}

impl<S> Service<Request> for CachePage<S>
where
    S: Service<Request> + Clone + Send + 'static,
    S::Response: IntoResponse,
    S::Error: Into<Infallible>,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // The inner service is driven to readiness in `call`, on a clone.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let capture = CacheRequest::capture(&request);
        let inner = self.inner.clone();
        let handler = async move {
            match inner.oneshot(request).await {
                Ok(response) => response.into_response(),
                Err(err) => match err.into() {},
            }
        };
        let config = self.config;
        Box::pin(async move { Ok(serve(config, capture, handler).await) })
    }
}
