//! Shared pieces of the cache-page examples.
