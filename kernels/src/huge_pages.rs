//! Asks the operating system to back large buffers with 2 MiB pages (Linux's transparent
//! huge pages), before any page of them is touched.
//!
//! A recurrent step streams its packed `W_hh` from L3 (16 MiB at H = 1024) once per step.
//! In 4 KiB pages that is 4096 pages, more than a core's second-level TLB holds (3072
//! entries on Zen 4), so every page costs a page walk on every step, and the hardware
//! prefetcher, which does not cross a 4 KiB page, starts over 64 times per strip of 16
//! columns. Measured on Zen 4 (AVX2, 1 thread, best of 400 calls, alternating):
//! `[4, 1024] x [1024, 4096]` 513-550 us in 4 KiB pages, 464-468 us in 2 MiB pages;
//! onnxruntime's own product at that shape, whose prepacked weight lies in huge pages,
//! 430-466 us in the same runs.
//!
//! The advice changes how the kernel backs the memory, never its contents. Where huge pages
//! are disabled (`/sys/kernel/mm/transparent_hugepage/enabled` set to `never`), on other
//! systems, or with the environment variable [`HUGE_PAGES_VAR`] set to `0`, nothing is asked.

use core::mem::MaybeUninit;

/// The size of a huge page on x86-64 and most aarch64 Linux systems.
pub const HUGE_PAGE_BYTES: usize = 2 << 20;

/// Buffers of at least this many bytes ask for huge pages: two huge pages, so that at least
/// one whole aligned huge page lies inside wherever the allocator puts them.
pub const MIN_BYTES: usize = 2 * HUGE_PAGE_BYTES;

/// The environment variable that turns the advice off when set to `0` (a system where the
/// kernel's compaction for huge pages stalls allocations more than the pages save).
pub const HUGE_PAGES_VAR: &str = "FUSED_RNN_HUGE_PAGES";

/// Whether this process asks for huge pages (read once).
pub fn enabled() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var(HUGE_PAGES_VAR).map_or(true, |v| v.trim() != "0"))
}

/// Asks for huge pages under every whole, aligned huge page inside `spare` (memory this
/// buffer owns but has not written yet). Returns whether the operating system took the
/// advice; `false` also when `spare` holds no whole huge page or the advice is off.
pub fn advise<T>(spare: &mut [MaybeUninit<T>]) -> bool {
    let start = spare.as_mut_ptr() as usize;
    let end = start + core::mem::size_of_val(spare);
    let first = start.next_multiple_of(HUGE_PAGE_BYTES);
    let last = end / HUGE_PAGE_BYTES * HUGE_PAGE_BYTES;
    if !enabled() || last <= first {
        return false;
    }
    advise_range(first, last - first)
}

#[cfg(all(target_os = "linux", not(miri)))]
fn advise_range(at: usize, len: usize) -> bool {
    // SAFETY: `at..at + len` lies inside a live allocation that the caller owns mutably
    // (`advise` took it as `&mut`), and starts on a page boundary as madvise requires.
    // MADV_HUGEPAGE only marks how the kernel may back these pages; it neither reads nor
    // writes them, and unmaps nothing.
    unsafe { libc::madvise(at as *mut libc::c_void, len, libc::MADV_HUGEPAGE) == 0 }
}

#[cfg(any(not(target_os = "linux"), miri))]
fn advise_range(_at: usize, _len: usize) -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_is_asked_below_a_whole_huge_page() {
        let mut small: Vec<f32> = Vec::with_capacity(1000);
        assert!(!advise(small.spare_capacity_mut()));
    }

    /// Where the kernel has transparent huge pages (`madvise` or `always`), the advice on a
    /// large untouched buffer is taken, and the buffer then holds what is written to it.
    #[cfg(target_os = "linux")]
    #[test]
    fn a_large_buffer_is_advised_where_the_kernel_has_huge_pages() {
        let setting = std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled");
        let mut big: Vec<f32> = Vec::with_capacity(3 * HUGE_PAGE_BYTES / 4);
        let taken = advise(big.spare_capacity_mut());
        match setting {
            Ok(s) if enabled() && (s.contains("[always]") || s.contains("[madvise]")) => {
                assert!(taken, "madvise(MADV_HUGEPAGE) refused with THP {s:?}")
            }
            _ => {}
        }
        big.extend((0..3 * HUGE_PAGE_BYTES / 4).map(|i| i as f32));
        assert!(big.iter().enumerate().all(|(i, &x)| x == i as f32));
    }
}
