//! A counting global allocator for tests and benchmarks: bytes in use, their peak, and the
//! number of allocations, so a test can prove a loop allocates nothing and a benchmark can
//! report the peak memory of a call.
//!
//! ```
//! use fused_rnn_kernels::testing::alloc::{Counting, mark};
//!
//! #[global_allocator]
//! static ALLOC: Counting = Counting;
//!
//! fn main() {
//!     let m = mark();
//!     let v = vec![0u8; 1000];
//!     assert!(m.allocations() >= 1 && m.peak_bytes() >= 1000);
//!     drop(v);
//! }
//! ```

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);
static COUNT: AtomicUsize = AtomicUsize::new(0);

/// The system allocator, counting (install it with `#[global_allocator]`).
#[derive(Clone, Copy, Debug, Default)]
pub struct Counting;

fn record(size: usize) {
    COUNT.fetch_add(1, Ordering::Relaxed);
    let now = CURRENT.fetch_add(size, Ordering::Relaxed) + size;
    PEAK.fetch_max(now, Ordering::Relaxed);
}

// SAFETY: every call is forwarded to the system allocator with the caller's arguments
// unchanged; the atomic counters are bookkeeping that does not touch the memory.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded as is; the caller upholds GlobalAlloc::alloc's contract.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            record(layout.size());
        }
        p
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded as is, as in `alloc`.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            record(layout.size());
        }
        p
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded as is; `ptr` came from this allocator with `layout`.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            CURRENT.fetch_sub(layout.size(), Ordering::Relaxed);
            record(new_size);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        CURRENT.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: `ptr` came from this allocator (the system's) with `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }
}

/// A point to measure from: the bytes in use now and the allocation count.
#[derive(Clone, Copy, Debug)]
pub struct Mark {
    bytes: usize,
    count: usize,
}

/// Starts a measurement (resets the peak to what is in use now).
pub fn mark() -> Mark {
    let bytes = CURRENT.load(Ordering::Relaxed);
    PEAK.store(bytes, Ordering::Relaxed);
    Mark {
        bytes,
        count: COUNT.load(Ordering::Relaxed),
    }
}

impl Mark {
    /// Bytes allocated at the peak since the mark, over what was in use then.
    pub fn peak_bytes(&self) -> usize {
        PEAK.load(Ordering::Relaxed).saturating_sub(self.bytes)
    }
    /// Allocations (and reallocations) since the mark, on any thread.
    pub fn allocations(&self) -> usize {
        COUNT.load(Ordering::Relaxed) - self.count
    }
}
