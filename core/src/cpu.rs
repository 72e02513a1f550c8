//! Which stripe the calling thread should write: the CPU it runs on.
//!
//! Three sources, fastest first, chosen once per process:
//!
//! 1. **rseq** (Linux 4.18+, glibc 2.35+ registers it for every thread): the
//!    kernel keeps the current CPU number in the thread's `struct rseq`, which
//!    glibc places at `thread pointer + __rseq_offset`. Reading it is one load
//!    from thread-local memory, about 1 ns.
//! 2. **`sched_getcpu`** (a vDSO call on Linux), about 10-20 ns.
//! 3. **A thread-local id** handed out round-robin when neither works (other
//!    platforms, or a kernel that refuses both).
//!
//! The answer is only a hint: the thread may migrate right after reading it.
//! Correctness never depends on it (every cell is an atomic), only speed: a
//! thread that writes the stripe of the CPU it runs on keeps that cache line
//! in its own core's cache.

use crate::sync::OnceLock;

/// How the current CPU is learned; see the module doc.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CpuSource {
    /// glibc's registered rseq area.
    Rseq,
    /// `sched_getcpu(3)`.
    SchedGetcpu,
    /// A per-thread id, handed out round-robin.
    ThreadLocal,
}

#[derive(Debug, Clone, Copy)]
#[cfg_attr(loom, allow(dead_code))]
enum Source {
    #[cfg(all(target_os = "linux", any(target_arch = "x86_64", target_arch = "aarch64")))]
    Rseq(isize),
    SchedGetcpu,
    ThreadLocal,
}

static SOURCE: OnceLock<Source> = OnceLock::new();

/// The source this process uses (decided on first call).
pub fn cpu_source() -> CpuSource {
    match source() {
        #[cfg(all(target_os = "linux", any(target_arch = "x86_64", target_arch = "aarch64")))]
        Source::Rseq(_) => CpuSource::Rseq,
        Source::SchedGetcpu => CpuSource::SchedGetcpu,
        Source::ThreadLocal => CpuSource::ThreadLocal,
    }
}

#[inline]
fn source() -> Source {
    *SOURCE.get_or_init(detect)
}

fn detect() -> Source {
    #[cfg(all(target_os = "linux", any(target_arch = "x86_64", target_arch = "aarch64")))]
    if let Some(offset) = rseq::offset() {
        if rseq::read(offset).is_some() {
            return Source::Rseq(offset);
        }
    }
    #[cfg(target_os = "linux")]
    {
        // SAFETY: sched_getcpu takes no arguments and only reads kernel state.
        if unsafe { libc::sched_getcpu() } >= 0 {
            return Source::SchedGetcpu;
        }
    }
    Source::ThreadLocal
}

/// The CPU the calling thread is (probably) running on; any `usize`, callers
/// reduce it modulo their stripe count.
#[cfg(not(loom))]
#[inline]
pub(crate) fn current() -> usize {
    match source() {
        #[cfg(all(target_os = "linux", any(target_arch = "x86_64", target_arch = "aarch64")))]
        Source::Rseq(offset) => rseq::read(offset).unwrap_or_else(thread_local_id),
        Source::SchedGetcpu => sched_getcpu().unwrap_or_else(thread_local_id),
        Source::ThreadLocal => thread_local_id(),
    }
}

/// Under loom the stripe must be a function of the schedule, not of the real
/// CPU, or executions would not replay: each model thread gets its own id in
/// spawn order, so threads write different stripes as on a real machine.
#[cfg(loom)]
pub(crate) fn current() -> usize {
    crate::sync::model_thread_index()
}

#[cfg_attr(loom, allow(dead_code))]
#[inline]
fn sched_getcpu() -> Option<usize> {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: sched_getcpu takes no arguments and only reads kernel state.
        let cpu = unsafe { libc::sched_getcpu() };
        if cpu >= 0 {
            return Some(cpu as usize);
        }
    }
    None
}

#[cfg(not(loom))]
fn thread_local_id() -> usize {
    use crate::sync::{AtomicUsize, Ordering};
    use std::cell::Cell;
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static ID: Cell<usize> = const { Cell::new(usize::MAX) };
    }
    ID.with(|id| {
        if id.get() == usize::MAX {
            id.set(NEXT.fetch_add(1, Ordering::Relaxed));
        }
        id.get()
    })
}

/// Number of CPUs the stripes are sized for: all configured CPUs, not only
/// those in this thread's affinity mask, because `cpu_id` can be any of them.
pub(crate) fn count() -> usize {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: sysconf with a valid name constant has no preconditions.
        let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_CONF) };
        if n > 0 {
            return n as usize;
        }
    }
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

#[cfg(all(target_os = "linux", any(target_arch = "x86_64", target_arch = "aarch64")))]
mod rseq {
    use std::ffi::CStr;

    /// `RSEQ_CPU_ID_UNINITIALIZED` and `RSEQ_CPU_ID_REGISTRATION_FAILED` are
    /// negative; a registered thread always holds a real CPU number.
    const CPU_ID_FIELD: isize = 4;

    /// glibc's `__rseq_offset`, when glibc registered rseq for this process
    /// (`__rseq_size` non-zero). Looked up with `dlsym` so the crate still
    /// links against older C libraries that lack the symbols.
    pub(super) fn offset() -> Option<isize> {
        let size = symbol::<libc::c_uint>(c"__rseq_size")?;
        let offset = symbol::<isize>(c"__rseq_offset")?;
        (size != 0).then_some(offset)
    }

    fn symbol<T: Copy>(name: &CStr) -> Option<T> {
        // SAFETY: RTLD_DEFAULT with a NUL-terminated name is a valid dlsym
        // call; a null result means "absent" and is handled.
        let ptr = unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) };
        if ptr.is_null() {
            return None;
        }
        // SAFETY: glibc defines `__rseq_size` as `const unsigned int` and
        // `__rseq_offset` as `const ptrdiff_t`; the caller asks for exactly
        // those types, and both are initialised before any user code runs.
        Some(unsafe { ptr.cast::<T>().read() })
    }

    #[inline(always)]
    fn thread_pointer() -> *const u8 {
        let tp: *const u8;
        // SAFETY: reads the thread pointer register; no memory is touched and
        // the ABI guarantees it is set for every thread.
        #[cfg(target_arch = "x86_64")]
        unsafe {
            // On x86-64 the TCB's first word points to itself.
            std::arch::asm!("mov {}, fs:0", out(reg) tp, options(nostack, readonly, preserves_flags));
        }
        // SAFETY: as above; `tpidr_el0` is the thread pointer on aarch64.
        #[cfg(target_arch = "aarch64")]
        unsafe {
            std::arch::asm!("mrs {}, tpidr_el0", out(reg) tp, options(nostack, nomem, preserves_flags));
        }
        tp
    }

    #[inline(always)]
    pub(super) fn read(offset: isize) -> Option<usize> {
        // SAFETY: glibc reported a registered rseq area (`__rseq_size != 0`),
        // which lives for the whole life of every thread at `tp + offset`;
        // `cpu_id` is a naturally aligned u32 at byte 4 that the kernel
        // rewrites on migration, hence the volatile read.
        let cpu = unsafe {
            let area = thread_pointer().offset(offset);
            area.offset(CPU_ID_FIELD).cast::<i32>().read_volatile()
        };
        (cpu >= 0).then_some(cpu as usize)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn current_cpu_is_below_the_configured_count_when_known() {
        let n = count();
        assert!(n >= 1);
        if cpu_source() != CpuSource::ThreadLocal {
            for _ in 0..1000 {
                assert!(current() < n, "cpu {} out of range {n}", current());
            }
        }
    }

    #[test]
    fn rseq_agrees_with_sched_getcpu_when_registered() {
        if cpu_source() != CpuSource::Rseq {
            return;
        }
        // Pin to one CPU so both readings must agree.
        // SAFETY: a zeroed cpu_set_t is the empty set; CPU_SET writes inside it.
        unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            let here = libc::sched_getcpu() as usize;
            libc::CPU_SET(here, &mut set);
            assert_eq!(libc::sched_setaffinity(0, std::mem::size_of_val(&set), &set), 0);
            assert_eq!(current(), here);
            assert_eq!(sched_getcpu(), Some(here));
        }
    }
}
