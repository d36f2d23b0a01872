//! Compile-time behaviour of `#[cache_page]`: what expands to a working handler, and
//! which mistakes are errors, where.
//!
//! Refresh the `.stderr` snapshots with `TRYBUILD=overwrite cargo test -p
//! cache-page-macros --test ui`, then read every changed one.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.pass("tests/ui/pass/*.rs");
    t.compile_fail("tests/ui/fail/*.rs");
}
