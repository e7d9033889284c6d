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
//! Advice before the first write only helps pages not yet touched, and the allocator hands a
//! long-running process memory it has touched before: in the benchmark runner, after the
//! training cases, the 16 MiB weights of lstm_h1024_b4 landed in a thread arena's recycled
//! pages (a 56 MiB stretch of them held 2 MiB of huge pages) and the case ran 24.5-25.4 ms
//! against 23.5 alone. So once a large buffer is written, [`collapse`] asks Linux (6.1 and
//! later) to move whatever of it still lies in small pages into huge ones.
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
    whole_pages(spare).is_some_and(|(at, len)| advise_range(at, len))
}

/// Asks Linux to move the whole, aligned huge pages inside `data` (written, owned by this
/// buffer) into huge pages now, copying what lies in small pages (`MADV_COLLAPSE`); returns
/// whether it did. `false` also on kernels before 6.1, where it is unknown, and when the
/// advice is off.
pub fn collapse<T>(data: &mut [T]) -> bool {
    whole_pages(data).is_some_and(|(at, len)| collapse_range(at, len))
}

/// The start and length in bytes of the whole, aligned huge pages inside `data`, if there
/// are any and the advice is on.
fn whole_pages<T>(data: &[T]) -> Option<(usize, usize)> {
    let start = data.as_ptr() as usize;
    let end = start + core::mem::size_of_val(data);
    let first = start.next_multiple_of(HUGE_PAGE_BYTES);
    let last = end / HUGE_PAGE_BYTES * HUGE_PAGE_BYTES;
    (enabled() && last > first).then(|| (first, last - first))
}

/// `MADV_COLLAPSE` (Linux's uapi value, since 6.1; the libc crate names it for glibc only).
#[cfg(all(target_os = "linux", not(miri)))]
const MADV_COLLAPSE: libc::c_int = 25;

#[cfg(all(target_os = "linux", not(miri)))]
fn collapse_range(at: usize, len: usize) -> bool {
    // SAFETY: as in `advise_range`: a page-aligned stretch of memory the caller owns
    // mutably. A collapse copies the pages' contents into huge pages and maps those in their
    // place: the program reads the same values at the same addresses.
    unsafe { libc::madvise(at as *mut libc::c_void, len, MADV_COLLAPSE) == 0 }
}

#[cfg(any(not(target_os = "linux"), miri))]
fn collapse_range(_at: usize, _len: usize) -> bool {
    false
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

    /// Memory written before any advice (small pages), collapsed: the same values. (Whether
    /// the kernel could collapse depends on its version and free memory; the values may
    /// never change either way.)
    #[test]
    fn a_collapse_keeps_the_values() {
        let mut written: Vec<f64> = (0..MIN_BYTES / 4).map(|i| i as f64 * 0.5).collect();
        let _ = collapse(&mut written);
        assert!(
            written
                .iter()
                .enumerate()
                .all(|(i, &x)| x == i as f64 * 0.5)
        );
        assert!(!collapse(&mut written[..1000]));
    }
}
