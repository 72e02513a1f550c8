//! This process as `/proc` reports it: resident memory, open descriptors,
//! threads. For tests and benchmarks that check what a node holds.

/// Resident set size, in bytes (`VmRSS`).
pub fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 1024
}

/// Resident set size, in MiB.
pub fn rss_mib() -> f64 {
    rss_bytes() as f64 / (1 << 20) as f64
}

/// Open file descriptors.
pub fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// Threads.
pub fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").unwrap().count()
}
