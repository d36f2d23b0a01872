//! Shared test support: a private redis-server per test binary, HTTP helpers.
