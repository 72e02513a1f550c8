//! CPU time of this process and of the calling thread, for benchmarks that
//! report the cost of background threads (everything but the load
//! generator's own thread).

use std::time::Duration;

/// User + system CPU time of the whole process so far.
pub fn process() -> Duration {
    // SAFETY: getrusage only writes into the zero-initialised struct we
    // pass; RUSAGE_SELF is a valid target.
    let ru = unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut ru);
        ru
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// CPU time of the calling thread so far.
pub fn thread() -> Duration {
    // SAFETY: clock_gettime only writes into the zero-initialised timespec
    // we pass; CLOCK_THREAD_CPUTIME_ID is valid on Linux.
    let ts = unsafe {
        let mut ts: libc::timespec = std::mem::zeroed();
        libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts);
        ts
    };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}
