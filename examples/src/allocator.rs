//! Allocator settings for long-running forwarders: give freed connection buffers back.
//!
//! Every TCP connection of the stack owns a receive and a send buffer (256 KiB each by
//! default, allocated zeroed). glibc serves allocations of at least `M_MMAP_THRESHOLD`
//! (128 KiB) with their own `mmap`, so an idle connection's untouched buffer pages cost no
//! memory and `free` gives them back at once — but only until the first such block is freed:
//! glibc then raises the threshold dynamically (up to 32 MiB) and serves later buffers from
//! its heaps, which it keeps after `free`. A forwarder that once held 1,000 connections then
//! keeps their half a gigabyte until `malloc_trim`. Setting the threshold explicitly turns the
//! dynamic adjustment off, so memory follows the connections that are open.
//!
//! The price is one `mmap` and one `munmap` per buffer, i.e. per connection set-up and close.

#![allow(unsafe_code)]

/// Buffers at least this large get pages of their own that return to the system on free:
/// glibc's initial value, above the largest packet (64 KiB), so packet buffers stay on the
/// fast heap path, and below the default connection buffer (256 KiB).
pub const MMAP_THRESHOLD: usize = 128 * 1024;

/// Makes glibc map every allocation of at least [`MMAP_THRESHOLD`] bytes separately and
/// unmap it on free (fixes `M_MMAP_THRESHOLD`, which disables glibc's dynamic threshold).
/// Returns whether the setting was applied; elsewhere than glibc it does nothing and returns
/// `false` (other allocators have their own policies).
pub fn return_large_buffers_to_the_system() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallopt only changes a tuning parameter of glibc's allocator; it has no
        // memory-safety preconditions and may be called at any time.
        unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD as libc::c_int) == 1 }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}
