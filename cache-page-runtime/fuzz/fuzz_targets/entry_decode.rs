//! Arbitrary bytes given to `Entry::decode`, as if read back from a store that holds
//! something damaged, truncated or foreign.
//!
//! - `decode` never panics;
//! - it never allocates more than a small multiple of its input (checked by the
//!   counting allocator below, independently of libFuzzer's `-malloc_limit_mb`, which
//!   needs a sanitizer's malloc hooks);
//! - when it accepts the bytes, `encode` then `decode` gives an equal entry, and
//!   encoding is then stable (a decoded entry re-encodes to the same bytes every time).
#![no_main]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use cache_page_runtime::Entry;
use libfuzzer_sys::fuzz_target;

/// Peak bytes that `decode` may hold at once, for an input of `len` bytes. The
/// largest legitimate use is the header vector: one `(HeaderName, HeaderValue)`
/// (72 bytes) per 6 input bytes, i.e. 12 bytes per input byte, plus the names that
/// are copied.
fn allowed_peak(len: usize) -> usize {
    16 * len + 4096
}

fuzz_target!(|data: &[u8]| {
    let raw = Bytes::copy_from_slice(data);
    let base = CURRENT.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    let decoded = Entry::decode(raw);
    let peak = PEAK.load(Ordering::Relaxed) - base;
    assert!(
        peak <= allowed_peak(data.len()),
        "decode of {} bytes held {peak} bytes at once",
        data.len()
    );
    let Ok(entry) = decoded else {
        return;
    };
    let encoded = entry.encode();
    let again = Entry::decode(encoded.clone()).expect("an encoded entry decodes");
    assert_eq!(again, entry);
    assert_eq!(again.encode(), encoded, "encoding is not stable");
});

static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

/// The system allocator, counting the bytes the Rust side holds (libFuzzer's own C++
/// allocations do not go through it).
struct Counting;

impl Counting {
    fn grew(by: usize) {
        let now = CURRENT.fetch_add(by, Ordering::Relaxed) + by;
        PEAK.fetch_max(now, Ordering::Relaxed);
    }

    fn shrank(by: usize) {
        CURRENT.fetch_sub(by, Ordering::Relaxed);
    }
}

// SAFETY: every call is forwarded to `System` unchanged; only counters are updated.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's guarantees.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            Self::grew(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's guarantees.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            Self::grew(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.dealloc(ptr, layout) };
        Self::shrank(layout.size());
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded with the caller's guarantees.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            if new_size >= layout.size() {
                Self::grew(new_size - layout.size());
            } else {
                Self::shrank(layout.size() - new_size);
            }
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;
