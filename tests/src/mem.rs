//! Process memory for leak and flood tests.

/// The process's resident set size in KiB (`VmRSS` of `/proc/self/status`).
pub fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/self/status")
}

/// Returns freed heap memory to the kernel (glibc `malloc_trim`), so that RSS measures what is
/// still allocated rather than what the allocator keeps for reuse.
pub fn trim_heap() {
    // SAFETY: malloc_trim only releases free memory of glibc's allocator; it has no
    // preconditions and touches no live allocation.
    unsafe {
        libc::malloc_trim(0);
    }
}
