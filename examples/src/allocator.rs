//! A global allocator for long-running forwarders: connection buffers get pages of their own.
//!
//! Every TCP connection of the stack owns a receive and a send buffer (256 KiB each by
//! default), allocated zeroed when its SYN arrives. With glibc's `malloc` they cost memory
//! even when the connection never carries a byte, and they outlive the connection:
//!
//! - a block served by `mmap` carries glibc's chunk header in its first page, so every idle
//!   connection kept two touched pages (8 KiB) resident;
//! - the first time such a block is freed glibc raises its mmap threshold (up to 32 MiB) and
//!   serves later buffers from its heaps, which keep freed memory: after 10,000 short
//!   connections the process held ~650 MiB until `malloc_trim`.
//!
//! [`PageMappedLargeAllocs`] maps every allocation of at least [`LARGE`] bytes with its own
//! anonymous `mmap` (no header: `dealloc` is told the size), and unmaps it on free. Untouched
//! pages cost nothing, freed buffers return to the system at once, and the behaviour does not
//! depend on the C library. Smaller allocations (packets, tasks, everything else) go to the
//! system allocator unchanged; with glibc, the first of them tunes it once for a forwarder
//! ([`tune_glibc_heap`]: one heap, which keeps up to 16 MiB of freed blocks).
//!
//! The price is one `mmap` and one `munmap` per buffer, i.e. per connection set-up and close.
//!
//! It needs Linux's `mremap`; elsewhere (Android's libc has no `mremap` binding, macOS, iOS,
//! FreeBSD, Windows) the forwarders use the system allocator: [`ForwarderAllocator`] is the
//! one for the target.
//!
//! ```ignore
//! #[global_allocator]
//! static ALLOC: netstack_examples::allocator::ForwarderAllocator =
//!     netstack_examples::allocator::FORWARDER_ALLOCATOR;
//! ```

#![allow(unsafe_code)]

#[cfg(target_os = "linux")]
use std::alloc::{GlobalAlloc, Layout, System};

/// The global allocator of the forwarders on this target: [`PageMappedLargeAllocs`] on Linux.
#[cfg(target_os = "linux")]
pub type ForwarderAllocator = PageMappedLargeAllocs;
/// The global allocator of the forwarders on this target: the system allocator off Linux.
#[cfg(not(target_os = "linux"))]
pub type ForwarderAllocator = std::alloc::System;

/// The value of [`ForwarderAllocator`], for `#[global_allocator]`.
#[cfg(target_os = "linux")]
pub const FORWARDER_ALLOCATOR: ForwarderAllocator = PageMappedLargeAllocs;
/// The value of [`ForwarderAllocator`], for `#[global_allocator]`.
#[cfg(not(target_os = "linux"))]
pub const FORWARDER_ALLOCATOR: ForwarderAllocator = std::alloc::System;

/// Allocations at least this large get pages of their own: above the largest packet buffer
/// (64 KiB), so per-packet allocations stay on the system allocator's fast path, and below
/// the default connection buffer (256 KiB).
pub const LARGE: usize = 128 * 1024;

/// Free memory glibc may keep at the top of each heap instead of returning it (see
/// [`tune_glibc_heap`]).
pub const TRIM_THRESHOLD: usize = 16 << 20;

/// Heaps ("arenas") glibc may use unless `MALLOC_ARENA_MAX` says otherwise (see
/// [`tune_glibc_heap`]).
pub const ARENA_MAX: usize = 1;

/// Tunes glibc's `malloc` for a forwarder's small blocks (packets, tasks; large buffers are
/// mapped by [`PageMappedLargeAllocs`] and not affected). [`PageMappedLargeAllocs`] calls it
/// on the process's first allocation, before `main` and before any thread exists (a thread
/// picks its heap at its first allocation; `#[tokio::main]` starts the workers before the
/// body of `main` runs). Calling it again changes nothing. Does nothing elsewhere than glibc.
///
/// - Freed small blocks: glibc may keep up to [`TRIM_THRESHOLD`] of them per heap instead of
///   giving memory back after every free that leaves more than 128 KiB at the top of a heap
///   (its default). Packet buffers of up to 64 KiB are allocated and freed at line rate; with
///   the default every few of them cost an `madvise` and fresh page faults (18 % of the
///   forwarder's CPU time with 8 streams; with 4 MiB, 8 streams at MTU 1500 ran at half speed,
///   BENCHMARKS.md run K).
/// - One heap ([`ARENA_MAX`]) instead of glibc's up to eight per core: every heap keeps its own
///   [`TRIM_THRESHOLD`] of freed packets, and packets are allocated on one thread and freed
///   on another. In the reconnect storm (256 flows; `cargo xtask bench --only netstack
///   --no-tcp --no-udp --no-idle --no-scaling`) one heap peaked at 51.5–54.4 MiB of RSS
///   against 66.0–71.4 with glibc's heaps, at the same connection rate, and TCP throughput
///   did not change beyond its spread on a 2-core machine (BENCHMARKS.md, after run K).
///   Where many cores allocate packets at once, a single heap's lock may cost more than it
///   saves: `MALLOC_ARENA_MAX=N` in the environment keeps glibc's own setting.
pub fn tune_glibc_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes tuning parameters of glibc's allocator; it has no
    // memory-safety preconditions and may be called at any time. getenv reads the environment
    // without allocating (this runs inside the global allocator); the name is a NUL-terminated
    // literal, and the result is only compared with null.
    unsafe {
        libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD as libc::c_int);
        if libc::getenv(c"MALLOC_ARENA_MAX".as_ptr()).is_null() {
            libc::mallopt(libc::M_ARENA_MAX, ARENA_MAX as libc::c_int);
        }
    }
}

/// Set once [`tune_glibc_heap`] ran from the allocator.
#[cfg(target_os = "linux")]
static HEAP_TUNED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Runs [`tune_glibc_heap`] on the first small allocation: one relaxed load per allocation
/// after that.
#[cfg(target_os = "linux")]
#[inline]
fn tune_heap_once() {
    use std::sync::atomic::Ordering;
    if !HEAP_TUNED.load(Ordering::Relaxed) && !HEAP_TUNED.swap(true, Ordering::Relaxed) {
        tune_glibc_heap();
    }
}

#[cfg(target_os = "linux")]
/// Page size assumed for alignment: `mmap` returns page-aligned memory, so any alignment up to
/// this is met (larger alignments go to the system allocator).
const PAGE: usize = 4096;

#[cfg(target_os = "linux")]
/// The global allocator described in the [module documentation](self).
#[derive(Debug, Clone, Copy, Default)]
pub struct PageMappedLargeAllocs;

#[cfg(target_os = "linux")]
fn is_large(layout: &Layout) -> bool {
    layout.size() >= LARGE && layout.align() <= PAGE
}

#[cfg(target_os = "linux")]
/// Maps `size` bytes of zeroed, private, anonymous memory; null on failure.
fn map(size: usize) -> *mut u8 {
    // SAFETY: an anonymous private mapping at an address of the kernel's choice touches no
    // existing memory; the result is checked for MAP_FAILED.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            size,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        std::ptr::null_mut()
    } else {
        p.cast()
    }
}

#[cfg(target_os = "linux")]
// SAFETY: every large block is a mapping of exactly `layout.size()` bytes made by `map`, only
// ever unmapped or remapped with that same size (GlobalAlloc guarantees `dealloc`/`realloc`
// get the layout it was allocated with); page alignment satisfies any `align <= PAGE`; small
// blocks are passed to `System` with the caller's arguments unchanged, and a block never
// moves between the two kinds without a copy (see `realloc`).
unsafe impl GlobalAlloc for PageMappedLargeAllocs {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if is_large(&layout) {
            map(layout.size())
        } else {
            tune_heap_once();
            // SAFETY: forwarded unchanged; the caller upholds GlobalAlloc's contract.
            unsafe { System.alloc(layout) }
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if is_large(&layout) {
            // Fresh anonymous pages are zero: nothing is written, nothing becomes resident.
            map(layout.size())
        } else {
            tune_heap_once();
            // SAFETY: forwarded unchanged.
            unsafe { System.alloc_zeroed(layout) }
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if is_large(&layout) {
            // SAFETY: `ptr` is a mapping of `layout.size()` bytes made by `map` (see above).
            unsafe {
                libc::munmap(ptr.cast(), layout.size());
            }
        } else {
            // SAFETY: forwarded unchanged.
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: GlobalAlloc::realloc's contract makes this layout valid.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        match (is_large(&layout), is_large(&new_layout)) {
            // SAFETY: forwarded unchanged.
            (false, false) => unsafe { System.realloc(ptr, layout, new_size) },
            (true, true) => {
                // SAFETY: `ptr` maps `layout.size()` bytes (see above); MREMAP_MAYMOVE keeps
                // the contents and returns a page-aligned mapping of `new_size` bytes.
                let p = unsafe {
                    libc::mremap(ptr.cast(), layout.size(), new_size, libc::MREMAP_MAYMOVE)
                };
                if p == libc::MAP_FAILED {
                    std::ptr::null_mut()
                } else {
                    p.cast()
                }
            }
            _ => {
                // SAFETY: `new_layout` is valid (above); on success both blocks are live and
                // distinct, and `min(old, new)` bytes are in bounds of both.
                unsafe {
                    let new = self.alloc(new_layout);
                    if !new.is_null() {
                        std::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                        self.dealloc(ptr, layout);
                    }
                    new
                }
            }
        }
    }
}

#[cfg(target_os = "linux")]
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_blocks_are_zeroed_writable_resizable_and_freed() {
        let a = PageMappedLargeAllocs;
        for (size, grown) in [(LARGE, 2 * LARGE), (256 * 1024, 64), (100, LARGE * 3)] {
            let layout = Layout::from_size_align(size, 8).unwrap();
            // SAFETY: non-zero size; every block is used within its size and freed once with
            // the layout (or new size) it has.
            unsafe {
                let p = a.alloc_zeroed(layout);
                assert!(!p.is_null());
                assert!(std::slice::from_raw_parts(p, size).iter().all(|&b| b == 0));
                p.write_bytes(0xab, size);
                let q = a.realloc(p, layout, grown);
                assert!(!q.is_null());
                let kept = size.min(grown);
                assert!(std::slice::from_raw_parts(q, kept)
                    .iter()
                    .all(|&b| b == 0xab));
                a.dealloc(q, Layout::from_size_align(grown, 8).unwrap());
            }
        }
    }
}
