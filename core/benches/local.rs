//! Local-core benchmark: headcount beside the designs it replaces, in one
//! process, on the same keys, hasher (foldhash) and operation streams.
//!
//! ```text
//! cargo bench -p headcount --bench local -- [--threads 1,2] [--secs 0.5] [--rounds 5]
//!     [--keys 1000] [--dist uniform|zipf] [--pin] [--no-mem] [--mem-only] [--mem-conns N] [--mem-topics N]
//!     [--only NAME,..] [--min-share 0.95 [--retries 20]]
//! ```
//!
//! Run without `--bench` (which `cargo bench` passes, and `cargo test
//! --benches` does not) it does a seconds-long smoke run instead, so that the
//! test suite can check it without paying for it.
//!
//! **The C ABI.** When the ffi crate's `libheadcount.so` is built (`cargo
//! build --release -p headcount-ffi`; found in the profile directory above
//! this binary, or at `$HEADCOUNT_FFI_LIB`), an `hc_add` row calls it through
//! `dlopen`ed symbols beside `Counter::add`; otherwise the row is left out.
//!
//! **What is timed.** Each workload x implementation x thread count runs for
//! `--secs` of wall time; every thread walks its own pre-generated stream of
//! key indices (64 Ki entries, uniform or Zipf(1.0) over `--keys` topics
//! named `chat:room:NNNNNN`), so neither key creation nor random numbers are
//! measured. All topics exist before timing starts (steady state). Rounds
//! interleave every implementation (rotating the order each round) so slow
//! drift from other load on the machine hits all of them alike; each figure
//! is the median over rounds. `ns/op/thread` is `wall x threads / ops`, the
//! per-thread inverse of throughput; `Mops/s` is total ops over wall time.
//! For the channel design the wall time includes draining the channel.
//!
//! **Memory.** A counting global allocator (enabled only around the memory
//! scenarios, so timed runs pay one relaxed load per allocation) reports the
//! bytes requested from the allocator and still live at the end of each
//! scenario; resident-set growth is printed beside it. Allocator bookkeeping
//! and rounding are in the RSS figure, not in the byte count.

use crossbeam_channel::{Receiver, Sender};
use headcount::{Counter, CounterConfig, TopicHandle};
use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::{HashMap, HashSet};
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicIsize, AtomicU64, Ordering::Relaxed};
use std::sync::Barrier;
use std::time::{Duration, Instant};

type Hasher = foldhash::fast::RandomState;

// ---------------------------------------------------------------------------
// Counting allocator
// ---------------------------------------------------------------------------

/// Counts live requested bytes while [`COUNTING`] is set.
struct Counting;

static COUNTING: AtomicBool = AtomicBool::new(false);
/// Live bytes requested (`Layout::size`).
static LIVE_BYTES: AtomicIsize = AtomicIsize::new(0);
/// Live bytes the C allocator really set aside: usable size plus its 8-byte
/// chunk header (glibc), so rounding and headers of small blocks show.
static LIVE_FOOTPRINT: AtomicIsize = AtomicIsize::new(0);

fn footprint(p: *mut u8) -> isize {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: `p` is a live block from the C allocator (through
        // `System`), which is what malloc_usable_size accepts.
        (unsafe { libc::malloc_usable_size(p.cast()) } + 8) as isize
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        let _ = p;
        0
    }
}

#[inline]
fn counting() -> bool {
    COUNTING.load(Relaxed)
}

fn count_alloc(p: *mut u8, size: usize) {
    LIVE_BYTES.fetch_add(size as isize, Relaxed);
    LIVE_FOOTPRINT.fetch_add(footprint(p), Relaxed);
}

fn count_free(p: *mut u8, size: usize) {
    LIVE_BYTES.fetch_sub(size as isize, Relaxed);
    LIVE_FOOTPRINT.fetch_sub(footprint(p), Relaxed);
}

// SAFETY: every method forwards to `System` with the caller's arguments
// unchanged, so `System`'s guarantees carry over; the counting on the side
// touches only atomics and never allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's guarantees (non-zero size).
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() && counting() {
            count_alloc(p, layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as `alloc`.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() && counting() {
            count_alloc(p, layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if counting() {
            count_free(ptr, layout.size());
        }
        // SAFETY: `ptr` was allocated by `System` (through us) with `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let counted = counting();
        if counted {
            count_free(ptr, layout.size());
        }
        // SAFETY: forwarded with the caller's guarantees.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if counted {
            if p.is_null() {
                // The old block is still live.
                count_alloc(ptr, layout.size());
            } else {
                count_alloc(p, new_size);
            }
        }
        p
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Runs `build`, returning what it built (still alive) with the bytes it
/// left allocated: requested, and the allocator's footprint.
fn measure_memory<R>(build: impl FnOnce() -> R) -> (R, isize, isize) {
    LIVE_BYTES.store(0, Relaxed);
    LIVE_FOOTPRINT.store(0, Relaxed);
    COUNTING.store(true, Relaxed);
    let r = build();
    COUNTING.store(false, Relaxed);
    (r, LIVE_BYTES.load(Relaxed), LIVE_FOOTPRINT.load(Relaxed))
}

// ---------------------------------------------------------------------------
// Options, keys and streams
// ---------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct Options {
    threads: Vec<usize>,
    secs: f64,
    rounds: usize,
    keys: usize,
    zipf: bool,
    pin: bool,
    time: bool,
    memory: bool,
    /// Re-run a sample (up to `retries` times) while its CPU share is below
    /// this: waits out bursts of other load on a shared machine. 0 = off.
    min_share: f64,
    retries: usize,
    /// Only implementations whose name contains one of these (all if empty).
    only: Vec<String>,
    /// Connections of the "N conns x 1 topic" memory scenario.
    mem_conns: usize,
    /// Topics of the "N topics" memory scenario.
    mem_topics: usize,
    /// Divides the memory scenarios' sizes (smoke runs).
    mem_scale: usize,
    smoke: bool,
}

fn options() -> Options {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let smoke = !args.iter().any(|a| a == "--bench");
    let mut o = Options {
        threads: vec![1, 2],
        secs: if smoke { 0.02 } else { 0.5 },
        rounds: if smoke { 1 } else { 5 },
        keys: 1000,
        zipf: false,
        pin: false,
        time: true,
        memory: true,
        only: Vec::new(),
        min_share: 0.0,
        retries: 20,
        mem_conns: 1_000_000,
        mem_topics: 100_000,
        mem_scale: if smoke { 100 } else { 1 },
        smoke,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| usage(&format!("{a} needs a value"))).clone();
        match a.as_str() {
            "--bench" => {}
            "--threads" => {
                o.threads = value()
                    .split(',')
                    .map(|t| t.trim().parse().ok().filter(|&n| n > 0).unwrap_or_else(|| usage("bad --threads")))
                    .collect();
            }
            "--secs" => o.secs = value().parse().ok().filter(|&s: &f64| s > 0.0).unwrap_or_else(|| usage("bad --secs")),
            "--rounds" => o.rounds = value().parse().ok().filter(|&r| r > 0).unwrap_or_else(|| usage("bad --rounds")),
            "--keys" => o.keys = value().parse().ok().filter(|&k| k > 0).unwrap_or_else(|| usage("bad --keys")),
            "--dist" => {
                o.zipf = match value().as_str() {
                    "uniform" => false,
                    "zipf" => true,
                    _ => usage("--dist is uniform or zipf"),
                }
            }
            "--only" => o.only = value().split(',').map(str::to_owned).collect(),
            "--mem-conns" => {
                o.mem_conns = value().parse().ok().filter(|&n| n > 0).unwrap_or_else(|| usage("bad --mem-conns"))
            }
            "--min-share" => {
                o.min_share =
                    value().parse().ok().filter(|s| (0.0..=1.0).contains(s)).unwrap_or_else(|| usage("bad --min-share"))
            }
            "--retries" => o.retries = value().parse().unwrap_or_else(|_| usage("bad --retries")),
            "--mem-topics" => {
                o.mem_topics = value().parse().ok().filter(|&n| n > 0).unwrap_or_else(|| usage("bad --mem-topics"))
            }
            "--pin" => o.pin = true,
            "--no-mem" => o.memory = false,
            "--mem-only" => o.time = false,
            "-h" | "--help" => usage(""),
            // Flags cargo's test runner may pass (e.g. a name filter) are
            // ignored rather than refused.
            _ => {}
        }
    }
    o
}

fn usage(problem: &str) -> ! {
    if !problem.is_empty() {
        eprintln!("error: {problem}");
    }
    eprintln!(
        "usage: cargo bench -p headcount --bench local -- [--threads 1,2] [--secs 0.5] [--rounds 5] \
         [--keys 1000] [--dist uniform|zipf] [--pin] [--no-mem] [--mem-only] [--mem-conns N] [--mem-topics N] [--only NAME,...] [--min-share 0.95 [--retries 20]]"
    );
    std::process::exit(if problem.is_empty() { 0 } else { 2 })
}

/// xorshift64*: deterministic, and only used before timing starts.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        ((self.next() >> 11) as f64 / (1u64 << 53) as f64 * n as f64) as usize
    }
}

/// Topic names, leaked so the channel design can send `&'static str`
/// (cheaper than the owned `String` a real producer would send).
struct Keys {
    names: Vec<&'static str>,
}

fn topic_name(i: usize) -> String {
    format!("chat:room:{i:06}")
}

impl Keys {
    fn new(n: usize) -> Self {
        Self { names: (0..n).map(|i| &*Box::leak(topic_name(i).into_boxed_str())).collect() }
    }
    #[inline]
    fn str(&self, k: usize) -> &'static str {
        self.names[k]
    }
    #[inline]
    fn bytes(&self, k: usize) -> &'static [u8] {
        self.names[k].as_bytes()
    }
}

const STREAM_LEN: usize = 1 << 16;

/// Per-thread streams of key indices: uniform, or Zipf(s = 1.0) over a random
/// permutation of the keys (so the hot topics are not neighbours in memory).
fn streams(keys: usize, threads: usize, zipf: bool) -> Vec<Box<[u32]>> {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut perm: Vec<u32> = (0..keys as u32).collect();
    for i in (1..perm.len()).rev() {
        perm.swap(i, rng.below(i + 1));
    }
    let cdf: Vec<f64> = (0..keys)
        .scan(0.0, |acc, r| {
            *acc += 1.0 / (r + 1) as f64;
            Some(*acc)
        })
        .collect();
    let total = *cdf.last().unwrap_or(&1.0);
    (0..threads)
        .map(|_| {
            (0..STREAM_LEN)
                .map(|_| {
                    if zipf {
                        let u = rng.below(1 << 30) as f64 / (1u64 << 30) as f64 * total;
                        perm[cdf.partition_point(|&c| c < u).min(keys - 1)]
                    } else {
                        rng.below(keys) as u32
                    }
                })
                .collect()
        })
        .collect()
}

// ---------------------------------------------------------------------------
// Workloads
// ---------------------------------------------------------------------------

/// One implementation of one workload. `op` is monomorphised into the timing
/// loop, so no implementation pays for dynamic dispatch.
trait Workload: Sync {
    /// One operation by thread `thread`, its `i`-th, on key index `k`.
    fn op(&self, keys: &Keys, thread: usize, i: u64, k: usize);
    /// Called before the workers start.
    fn start(&self) {}
    /// Called after the workers stop, inside the timed window; returns CPU
    /// time spent by helper threads (the channel design's counter thread)
    /// since `start`.
    fn finish(&self) -> Duration {
        Duration::ZERO
    }
}

/// A connection id unique to (thread, op): each track+untrack pair creates
/// and removes one membership entry, as a real join/leave does.
#[inline]
fn conn(thread: usize, i: u64) -> u64 {
    ((thread as u64) << 48) | (i & ((1 << 48) - 1))
}

// --- headcount ---

struct HcAddStr(Counter);
impl Workload for HcAddStr {
    #[inline]
    fn op(&self, keys: &Keys, _: usize, _: u64, k: usize) {
        self.0.add(keys.bytes(k), 1).expect("valid topic");
    }
}

/// [`HcAddStr`] on a thread that already holds an epoch pin, so the pin
/// inside `Counter::add` is only a counter increment: the difference from
/// `Counter::add` is what the pin per call costs. A measurement, not a way to
/// call headcount (a pin held for long stalls memory reclamation).
struct HcAddPinned(Counter);
impl Workload for HcAddPinned {
    #[inline]
    fn op(&self, keys: &Keys, _: usize, _: u64, k: usize) {
        thread_local! {
            static HELD: crossbeam_epoch::Guard = crossbeam_epoch::pin();
        }
        HELD.with(|_| self.0.add(keys.bytes(k), 1).expect("valid topic"));
    }
}

struct HcAddHandle(Vec<TopicHandle>);
impl Workload for HcAddHandle {
    #[inline]
    fn op(&self, _: &Keys, _: usize, _: u64, k: usize) {
        self.0[k].add(1);
    }
}

struct HcTrackStr(Counter);
impl Workload for HcTrackStr {
    #[inline]
    fn op(&self, keys: &Keys, thread: usize, i: u64, k: usize) {
        let c = conn(thread, i);
        let added = self.0.track(keys.bytes(k), c).expect("valid topic");
        let removed = self.0.untrack(keys.bytes(k), c).expect("valid topic");
        assert!(added && removed);
    }
}

struct HcTrackHandle(Vec<TopicHandle>);
impl Workload for HcTrackHandle {
    #[inline]
    fn op(&self, _: &Keys, thread: usize, i: u64, k: usize) {
        let c = conn(thread, i);
        assert!(self.0[k].track(c) && self.0[k].untrack(c));
    }
}

/// `hc_add` through the C ABI, as a C program calls it: the ffi crate's
/// `libheadcount.so` (`cargo build --release -p headcount-ffi`), opened with
/// `dlopen`, on a local-only node started by `hc_node_start`. Its library
/// holds its own copy of the core, so this row and `Counter::add` differ by
/// the wrapper (argument checks, `catch_unwind`, the node's closed check) and
/// the call through a symbol.
struct FfiAdd {
    node: *mut libc::c_void,
    add: unsafe extern "C" fn(*mut libc::c_void, *const u8, usize, i64) -> i32,
}

// SAFETY: `hc_node` is documented thread-safe for every call but
// `hc_node_free`, which is never called: the node, its config and the library (never
// `dlclose`d) live to the end of the process.
unsafe impl Sync for FfiAdd {}

impl FfiAdd {
    /// Opens the library next to the bench's profile directory (or
    /// `$HEADCOUNT_FFI_LIB`) and starts a node; `None` if it is not built.
    fn open() -> Option<Self> {
        let path = match std::env::var_os("HEADCOUNT_FFI_LIB") {
            Some(p) => std::path::PathBuf::from(p),
            // target/<profile>/deps/local-<hash> -> target/<profile>/libheadcount.so
            None => std::env::current_exe().ok()?.parent()?.parent()?.join("libheadcount.so"),
        };
        let cpath = std::ffi::CString::new(path.to_str()?).ok()?;
        // SAFETY: a NUL-terminated path; RTLD_NOW resolves every symbol now.
        let lib = unsafe { libc::dlopen(cpath.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
        if lib.is_null() {
            return None;
        }
        let sym = |name: &std::ffi::CStr| {
            // SAFETY: `lib` is an open handle and `name` NUL-terminated.
            let p = unsafe { libc::dlsym(lib, name.as_ptr()) };
            (!p.is_null()).then_some(p)
        };
        let (new_cfg, start, add) = (sym(c"hc_config_new")?, sym(c"hc_node_start")?, sym(c"hc_add")?);
        // SAFETY: the symbols are the exports of include/headcount.h, with
        // these prototypes (`hc_status` is a C enum: an `int`).
        unsafe {
            type NewCfg = unsafe extern "C" fn() -> *mut libc::c_void;
            type Start = unsafe extern "C" fn(*const libc::c_void, *mut *mut libc::c_void) -> i32;
            type Add = unsafe extern "C" fn(*mut libc::c_void, *const u8, usize, i64) -> i32;
            let new_cfg = std::mem::transmute::<*mut libc::c_void, NewCfg>(new_cfg);
            let start = std::mem::transmute::<*mut libc::c_void, Start>(start);
            let cfg = new_cfg();
            let mut node = std::ptr::null_mut();
            if cfg.is_null() || start(cfg, &mut node) != 0 {
                return None;
            }
            Some(FfiAdd { node, add: std::mem::transmute::<*mut libc::c_void, Add>(add) })
        }
    }
}

impl Workload for FfiAdd {
    #[inline]
    fn op(&self, keys: &Keys, _: usize, _: u64, k: usize) {
        let t = keys.bytes(k);
        // SAFETY: a live node and `t.len()` readable bytes.
        let status = unsafe { (self.add)(self.node, t.as_ptr(), t.len(), 1) };
        assert_eq!(status, 0, "hc_add failed");
    }
}

// --- comparators: counting ---

struct MutexAdd(parking_lot::Mutex<HashMap<String, i64, Hasher>>);
impl Workload for MutexAdd {
    #[inline]
    fn op(&self, keys: &Keys, _: usize, _: u64, k: usize) {
        let mut map = self.0.lock();
        match map.get_mut(keys.str(k)) {
            Some(n) => *n += 1,
            None => {
                map.insert(keys.str(k).to_owned(), 1);
            }
        }
    }
}

struct DashAdd(dashmap::DashMap<String, AtomicI64, Hasher>);
impl Workload for DashAdd {
    #[inline]
    fn op(&self, keys: &Keys, _: usize, _: u64, k: usize) {
        match self.0.get(keys.str(k)) {
            Some(n) => {
                n.fetch_add(1, Relaxed);
            }
            None => {
                self.0.entry(keys.str(k).to_owned()).or_default().fetch_add(1, Relaxed);
            }
        }
    }
}

/// papaya pinned per call, like every headcount call (which pins too).
struct PapayaAdd(papaya::HashMap<String, AtomicI64, Hasher>);
impl Workload for PapayaAdd {
    #[inline]
    fn op(&self, keys: &Keys, _: usize, _: u64, k: usize) {
        let map = self.0.pin();
        match map.get(keys.str(k)) {
            Some(n) => n.fetch_add(1, Relaxed),
            None => map.get_or_insert_with(keys.str(k).to_owned(), AtomicI64::default).fetch_add(1, Relaxed),
        };
    }
}

/// One shared `AtomicI64` per topic, resolved before timing: what any map
/// of `Arc<AtomicI64>` gives a caller who caches the value (unstriped).
struct AtomicCells(Vec<AtomicI64>);
impl Workload for AtomicCells {
    #[inline]
    fn op(&self, _: &Keys, _: usize, _: u64, k: usize) {
        self.0[k].fetch_add(1, Relaxed);
    }
}

// --- comparators: membership ---

struct MutexTrack(parking_lot::Mutex<HashMap<String, HashSet<u64, Hasher>, Hasher>>);
impl Workload for MutexTrack {
    #[inline]
    fn op(&self, keys: &Keys, thread: usize, i: u64, k: usize) {
        let c = conn(thread, i);
        let added = self.0.lock().entry(keys.str(k).to_owned()).or_default().insert(c);
        let removed = self.0.lock().get_mut(keys.str(k)).is_some_and(|s| s.remove(&c));
        assert!(added && removed);
    }
}

struct DashTrack(dashmap::DashMap<String, HashSet<u64, Hasher>, Hasher>);
impl Workload for DashTrack {
    #[inline]
    fn op(&self, keys: &Keys, thread: usize, i: u64, k: usize) {
        let c = conn(thread, i);
        let added = match self.0.get_mut(keys.str(k)) {
            Some(mut s) => s.insert(c),
            None => self.0.entry(keys.str(k).to_owned()).or_default().insert(c),
        };
        let removed = self.0.get_mut(keys.str(k)).is_some_and(|mut s| s.remove(&c));
        assert!(added && removed);
    }
}

// --- comparator: one counter thread fed by a bounded channel ---

enum Msg {
    Add(&'static str, i64),
    Track(&'static str, u64),
    Untrack(&'static str, u64),
    /// Reply, once everything sent before has been applied, with the
    /// counter thread's CPU time so far.
    Sync(Sender<Duration>),
}

/// The "single local counter process" design: application threads send
/// (topic, delta) or (topic, conn) messages; one thread owns the map and
/// applies them. Sends are fire-and-forget (no reply to wait for), which
/// favours this design: a `track` that must return "was it new?" would pay a
/// round trip.
struct Channel {
    tx: Sender<Msg>,
    /// The counter thread's CPU time at `start` (nanoseconds).
    cpu_at_start: AtomicU64,
}

impl Channel {
    fn spawn() -> Self {
        let (tx, rx) = crossbeam_channel::bounded(4096);
        std::thread::spawn(move || actor(rx));
        Self { tx, cpu_at_start: AtomicU64::new(0) }
    }
}

fn actor(rx: Receiver<Msg>) {
    let mut counts: HashMap<String, i64, Hasher> = HashMap::default();
    let mut members: HashMap<String, HashSet<u64, Hasher>, Hasher> = HashMap::default();
    for msg in rx {
        match msg {
            Msg::Add(topic, d) => match counts.get_mut(topic) {
                Some(n) => *n += d,
                None => {
                    counts.insert(topic.to_owned(), d);
                }
            },
            Msg::Track(topic, c) => {
                match members.get_mut(topic) {
                    Some(s) => s.insert(c),
                    None => members.entry(topic.to_owned()).or_default().insert(c),
                };
            }
            Msg::Untrack(topic, c) => {
                if let Some(s) = members.get_mut(topic) {
                    s.remove(&c);
                }
            }
            Msg::Sync(reply) => {
                let _ = reply.send(thread_cpu());
            }
        }
    }
    black_box((counts, members));
}

impl Channel {
    /// Waits until the counter thread has applied everything sent so far;
    /// returns its CPU time.
    fn sync(&self) -> Duration {
        let (tx, rx) = crossbeam_channel::bounded(1);
        self.tx.send(Msg::Sync(tx)).expect("actor alive");
        rx.recv().expect("actor replies")
    }

    fn mark_start(&self) {
        self.cpu_at_start.store(self.sync().as_nanos() as u64, Relaxed);
    }

    fn cpu_since_start(&self) -> Duration {
        self.sync().saturating_sub(Duration::from_nanos(self.cpu_at_start.load(Relaxed)))
    }
}

struct ChannelAdd(Channel);
impl Workload for ChannelAdd {
    #[inline]
    fn op(&self, keys: &Keys, _: usize, _: u64, k: usize) {
        self.0.tx.send(Msg::Add(keys.str(k), 1)).expect("actor alive");
    }
    fn start(&self) {
        self.0.mark_start();
    }
    fn finish(&self) -> Duration {
        self.0.cpu_since_start()
    }
}

struct ChannelTrack(Channel);
impl Workload for ChannelTrack {
    #[inline]
    fn op(&self, keys: &Keys, thread: usize, i: u64, k: usize) {
        let c = conn(thread, i);
        self.0.tx.send(Msg::Track(keys.str(k), c)).expect("actor alive");
        self.0.tx.send(Msg::Untrack(keys.str(k), c)).expect("actor alive");
    }
    fn start(&self) {
        self.0.mark_start();
    }
    fn finish(&self) -> Duration {
        self.0.cpu_since_start()
    }
}

// ---------------------------------------------------------------------------
// Timing
// ---------------------------------------------------------------------------

const BATCH: u64 = 256;

fn pin_to(cpu: usize) {
    #[cfg(target_os = "linux")]
    // SAFETY: a zeroed cpu_set_t is the empty set; CPU_SET writes inside it,
    // and sched_setaffinity only reads it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of_val(&set), &set);
    }
    #[cfg(not(target_os = "linux"))]
    let _ = cpu;
}

/// CPU time the calling thread has used.
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid out-pointer; the clock id is a constant.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// One timed run.
#[derive(Clone, Copy, Debug)]
struct Sample {
    /// Total operations per second of wall time.
    ops_per_sec: f64,
    /// CPU nanoseconds per operation: the workers' CPU time (plus helper
    /// threads') over total operations. What an operation costs a core while
    /// it runs, whether or not other load took the core away meanwhile.
    cpu_ns_per_op: f64,
    /// The workers' CPU time / (threads x wall). Well below 1: other load on
    /// the machine took cores away, or the design blocks (a lock that parks,
    /// a full channel). At 2 threads, the two ran at the same time for at
    /// least `2 x share - 1` of the run.
    cpu_share: f64,
}

/// Runs `w` on `threads` threads for `secs`.
fn run<W: Workload>(w: &W, keys: &Keys, streams: &[Box<[u32]>], threads: usize, secs: f64, pin: bool) -> Sample {
    let stop = AtomicBool::new(false);
    let barrier = Barrier::new(threads + 1);
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    w.start();
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let (stream, stop, barrier) = (&streams[t], &stop, &barrier);
                s.spawn(move || {
                    if pin {
                        pin_to(t % cpus);
                    }
                    barrier.wait();
                    let cpu0 = thread_cpu();
                    let mut i = 0u64;
                    loop {
                        for _ in 0..BATCH {
                            let k = stream[i as usize & (STREAM_LEN - 1)] as usize;
                            w.op(keys, t, i, k);
                            i += 1;
                        }
                        if stop.load(Relaxed) {
                            return (i, thread_cpu() - cpu0);
                        }
                    }
                })
            })
            .collect();
        barrier.wait();
        let t0 = Instant::now();
        std::thread::sleep(Duration::from_secs_f64(secs));
        stop.store(true, Relaxed);
        let (mut ops, mut cpu) = (0, Duration::ZERO);
        for h in workers {
            let (o, c) = h.join().expect("worker");
            ops += o;
            cpu += c;
        }
        let helper_cpu = w.finish();
        let wall = t0.elapsed().as_secs_f64();
        Sample {
            ops_per_sec: ops as f64 / wall,
            cpu_ns_per_op: (cpu + helper_cpu).as_secs_f64() * 1e9 / ops as f64,
            cpu_share: cpu.as_secs_f64() / (threads as f64 * wall),
        }
    })
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Group {
    AddStr,
    AddHandle,
    Track,
}

impl Group {
    fn title(self) -> &'static str {
        match self {
            Group::AddStr => "add by string (delta +1)",
            Group::AddHandle => "add by pre-resolved topic (delta +1)",
            Group::Track => "track + untrack pair (with membership)",
        }
    }
}

/// One row: a workload run by one implementation.
struct Entry {
    group: Group,
    name: &'static str,
    /// Is this headcount's row (the one ratios are taken against)?
    ours: bool,
    run: Box<dyn Fn(usize, f64) -> Sample + Sync>,
}

fn entry<W: Workload + 'static>(
    group: Group,
    name: &'static str,
    ours: bool,
    w: W,
    keys: &'static Keys,
    streams: &'static [Box<[u32]>],
    pin: bool,
) -> Entry {
    Entry { group, name, ours, run: Box::new(move |threads, secs| run(&w, keys, streams, threads, secs, pin)) }
}

fn entries(o: &Options, keys: &'static Keys, streams: &'static [Box<[u32]>]) -> Vec<Entry> {
    let counter = Counter::new();
    let handles: Vec<TopicHandle> = (0..keys.names.len()).map(|k| counter.topic(keys.bytes(k)).unwrap()).collect();
    let track_counter = Counter::new();
    let track_handles: Vec<TopicHandle> =
        (0..keys.names.len()).map(|k| track_counter.topic(keys.bytes(k)).unwrap()).collect();

    let mutex_add = MutexAdd(Default::default());
    let dash_add = DashAdd(dashmap::DashMap::with_hasher(Hasher::default()));
    let papaya_add = PapayaAdd(papaya::HashMap::with_hasher(Hasher::default()));
    let channel_add = ChannelAdd(Channel::spawn());
    let mutex_track = MutexTrack(Default::default());
    let dash_track = DashTrack(dashmap::DashMap::with_hasher(Hasher::default()));
    let channel_track = ChannelTrack(Channel::spawn());
    // Every map holds every topic before timing starts.
    for k in 0..keys.names.len() {
        mutex_add.op(keys, 0, 0, k);
        dash_add.op(keys, 0, 0, k);
        papaya_add.op(keys, 0, 0, k);
        channel_add.op(keys, 0, 0, k);
        mutex_track.op(keys, 0, 0, k);
        dash_track.op(keys, 0, 0, k);
        channel_track.op(keys, 0, 0, k);
    }
    channel_add.finish();
    channel_track.finish();

    let pin = o.pin;
    use Group::*;
    let mut all = vec![
        entry(AddStr, "headcount Counter::add(&[u8])", true, HcAddStr(counter.clone()), keys, streams, pin),
        entry(AddStr, "Counter::add, thread already pinned", false, HcAddPinned(counter.clone()), keys, streams, pin),
        entry(AddStr, "Mutex<HashMap<String,i64>>", false, mutex_add, keys, streams, pin),
        entry(AddStr, "DashMap<String,AtomicI64>", false, dash_add, keys, streams, pin),
        entry(AddStr, "papaya::HashMap<String,AtomicI64>", false, papaya_add, keys, streams, pin),
        entry(AddStr, "1 counter thread + bounded channel", false, channel_add, keys, streams, pin),
        entry(AddHandle, "headcount TopicHandle::add", true, HcAddHandle(handles), keys, streams, pin),
        entry(
            AddHandle,
            "shared AtomicI64 per topic (unstriped)",
            false,
            AtomicCells((0..keys.names.len()).map(|_| AtomicI64::new(0)).collect()),
            keys,
            streams,
            pin,
        ),
        entry(Track, "headcount track+untrack(&[u8])", true, HcTrackStr(track_counter), keys, streams, pin),
        entry(Track, "headcount TopicHandle track+untrack", false, HcTrackHandle(track_handles), keys, streams, pin),
        entry(Track, "Mutex<HashMap<String,HashSet<u64>>>", false, mutex_track, keys, streams, pin),
        entry(Track, "DashMap<String,HashSet<u64>>", false, dash_track, keys, streams, pin),
        entry(Track, "1 counter thread + channel (no reply)", false, channel_track, keys, streams, pin),
    ];
    match FfiAdd::open() {
        Some(ffi) => {
            for k in 0..keys.names.len() {
                ffi.op(keys, 0, 0, k);
            }
            all.insert(1, entry(AddStr, "hc_add (C ABI, dlopen'd libheadcount.so)", false, ffi, keys, streams, pin));
        }
        None => eprintln!("no hc_add row: build the C library first (cargo build --release -p headcount-ffi)"),
    }
    if !o.only.is_empty() {
        all.retain(|e| o.only.iter().any(|n| e.name.contains(n.as_str())));
    }
    all
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// `results[entry][thread index]`: medians over rounds (each field apart).
fn time_all(o: &Options, entries: &[Entry]) -> Vec<Vec<Sample>> {
    let mut samples = vec![vec![Vec::new(); o.threads.len()]; entries.len()];
    // Warm-up: caches, page faults, lazily allocated thread state.
    let warm = (o.secs / 4.0).min(0.1);
    for e in entries {
        (e.run)(*o.threads.iter().max().unwrap_or(&1), warm);
    }
    let (mut retried, mut short) = (0, 0);
    for round in 0..o.rounds {
        eprint!("round {}/{}\r", round + 1, o.rounds);
        for (ti, &threads) in o.threads.iter().enumerate() {
            for j in 0..entries.len() {
                let e = (j + round * 5) % entries.len();
                // Keeps the try that got the most CPU.
                let mut sample = (entries[e].run)(threads, o.secs);
                for _ in 0..o.retries {
                    if sample.cpu_share >= o.min_share {
                        break;
                    }
                    retried += 1;
                    std::thread::sleep(Duration::from_millis(200));
                    let again = (entries[e].run)(threads, o.secs);
                    if again.cpu_share > sample.cpu_share {
                        sample = again;
                    }
                }
                short += usize::from(sample.cpu_share < o.min_share);
                samples[e][ti].push(sample);
            }
        }
    }
    eprintln!();
    if o.min_share > 0.0 {
        println!(
            "(--min-share {}: {retried} samples re-run because other load took the cores; \
             {short} still below it after {} retries)",
            o.min_share, o.retries
        );
    }
    let med = |s: &[Sample], f: fn(&Sample) -> f64| median(&mut s.iter().map(f).collect::<Vec<_>>());
    samples
        .into_iter()
        .map(|per| {
            per.iter()
                .map(|s| Sample {
                    ops_per_sec: med(s, |x| x.ops_per_sec),
                    cpu_ns_per_op: med(s, |x| x.cpu_ns_per_op),
                    cpu_share: med(s, |x| x.cpu_share),
                })
                .collect()
        })
        .collect()
}

const GROUPS: [Group; 3] = [Group::AddStr, Group::AddHandle, Group::Track];

fn print_tables(o: &Options, entries: &[Entry], results: &[Vec<Sample>]) {
    for (ti, &threads) in o.threads.iter().enumerate() {
        println!();
        println!("### {threads} thread{}", if threads == 1 { "" } else { "s" });
        println!();
        println!(
            "| workload | implementation | CPU ns/op | wall ns/op/thread | Mops/s total | CPU share \
             | headcount is (CPU) | headcount is (wall) |"
        );
        println!("|---|---|---:|---:|---:|---:|---:|---:|");
        for group in GROUPS {
            let ours = entries.iter().zip(results).find(|(e, _)| e.group == group && e.ours).map(|(_, r)| r[ti]);
            for (e, r) in entries.iter().zip(results).filter(|(e, _)| e.group == group) {
                let x = r[ti];
                let (by_cpu, by_wall) = match ours {
                    _ if e.ours => ("(baseline)".to_owned(), "(baseline)".to_owned()),
                    Some(h) => (
                        format!("{:.2}x", x.cpu_ns_per_op / h.cpu_ns_per_op),
                        format!("{:.2}x", h.ops_per_sec / x.ops_per_sec),
                    ),
                    None => ("-".to_owned(), "-".to_owned()),
                };
                println!(
                    "| {} | {} | {:.1} | {:.1} | {:.1} | {:.2} | {by_cpu} | {by_wall} |",
                    group.title(),
                    e.name,
                    x.cpu_ns_per_op,
                    threads as f64 * 1e9 / x.ops_per_sec,
                    x.ops_per_sec / 1e6,
                    x.cpu_share,
                );
            }
        }
    }
    println!();
    println!("- `CPU ns/op`: CPU time of the workers (and of the channel design's counter thread) per");
    println!("  operation: what an operation costs a core while it runs. Robust to other load on the");
    println!("  machine; flatters designs that block (a parked thread uses no CPU).");
    println!("- `wall ns/op/thread` = wall time x threads / operations; `Mops/s total` over wall time.");
    println!("- `CPU share` = workers' CPU time / (threads x wall): below 1 when other load took the");
    println!("  cores, or the design blocked. At 2 threads they ran together >= (2 x share - 1) of the time.");
    println!("- `headcount is` = how many times faster headcount is (above 1: headcount faster).");
}

fn print_scaling(o: &Options, entries: &[Entry], results: &[Vec<Sample>]) {
    if o.threads.len() < 2 {
        return;
    }
    println!();
    println!("### Scaling from {} thread(s)", o.threads[0]);
    println!();
    println!("Wall: total throughput at N threads / at {} (needs N free cores).", o.threads[0]);
    println!("CPU: N x (CPU ns/op at {} / at N): the scaling the per-op cost allows on N free cores.", o.threads[0]);
    println!();
    let head: Vec<String> = o.threads.iter().map(|t| format!("{t} thr wall | {t} thr CPU")).collect();
    println!("| implementation | {} |", head.join(" | "));
    println!("|---|{}", "---:|---:|".repeat(o.threads.len()));
    for (e, r) in entries.iter().zip(results) {
        let base = o.threads[0] as f64;
        let cells: Vec<String> = r
            .iter()
            .zip(&o.threads)
            .map(|(x, &n)| {
                format!(
                    "{:.2}x | {:.2}x",
                    x.ops_per_sec / r[0].ops_per_sec,
                    n as f64 / base * r[0].cpu_ns_per_op / x.cpu_ns_per_op
                )
            })
            .collect();
        println!("| {} | {} |", e.name, cells.join(" | "));
    }
}

/// Checks issue 2's targets that this run can measure.
fn print_targets(o: &Options, entries: &[Entry], results: &[Vec<Sample>], mem_pair: Option<f64>) {
    let find = |name: &str| entries.iter().position(|e| e.name == name);
    let at = |e: Option<usize>, t: usize| -> Option<Sample> {
        let ti = o.threads.iter().position(|&x| x == t)?;
        Some(results[e?][ti])
    };
    let wall = |x: Sample, t: usize| t as f64 * 1e9 / x.ops_per_sec;
    let verdict = |ok: bool| if ok { "met" } else { "NOT met" };
    let handle = find("headcount TopicHandle::add");
    let string = find("headcount Counter::add(&[u8])");
    let track = find("headcount track+untrack(&[u8])");
    let papaya = find("papaya::HashMap<String,AtomicI64>");
    println!();
    println!("### Targets (issue 2): CPU ns/op (wall ns/op/thread, CPU share)");
    println!();
    let per_op = |what: &str, e: Option<usize>, limit: f64| {
        for t in [1, 2] {
            if let Some(x) = at(e, t) {
                println!(
                    "- {what} <= {limit} ns/op/thread at {t} thr: {:.1} CPU ns ({:.1} wall, share {:.2}): {}",
                    x.cpu_ns_per_op,
                    wall(x, t),
                    x.cpu_share,
                    verdict(x.cpu_ns_per_op <= limit)
                );
            }
        }
    };
    per_op("add by handle", handle, 12.0);
    if let (Some(a), Some(b)) = (at(handle, 1), at(handle, 2)) {
        let by_wall = b.ops_per_sec / a.ops_per_sec;
        let by_cpu = 2.0 * a.cpu_ns_per_op / b.cpu_ns_per_op;
        println!(
            "- add by handle 1->2 threads >= 1.8x total: wall {by_wall:.2}x ({}), CPU-projected {by_cpu:.2}x ({}); \
             2-thread CPU share {:.2}",
            verdict(by_wall >= 1.8),
            verdict(by_cpu >= 1.8),
            b.cpu_share
        );
    }
    per_op("add by string", string, 35.0);
    per_op("track+untrack pair", track, 200.0);
    match (at(string, 16), at(papaya, 16)) {
        (Some(x), Some(p)) => println!(
            "- 16 threads, add by string >= 500 Mops/s and >= 3x papaya: {:.0} Mops/s ({}), {:.2}x papaya ({})",
            x.ops_per_sec / 1e6,
            verdict(x.ops_per_sec >= 500e6),
            x.ops_per_sec / p.ops_per_sec,
            verdict(x.ops_per_sec / p.ops_per_sec >= 3.0)
        ),
        _ => println!("- 16 threads, add by string >= 500 Mops/s and >= 3x papaya: not measured (no --threads 16)"),
    }
    if let Some(b) = mem_pair {
        println!("- memory per tracked pair <= 64 B: {b:.1} B requested (worst scenario): {}", verdict(b <= 64.0));
    }
}

// ---------------------------------------------------------------------------
// Memory
// ---------------------------------------------------------------------------

/// Prints one memory row; returns requested bytes per item.
fn mem_row(what: &str, items: usize, bytes: isize, footprint: isize) -> f64 {
    let per = bytes as f64 / items as f64;
    println!(
        "| {what} | {items} | {:.1} | {per:.1} | {:.1} |",
        bytes as f64 / 1048576.0,
        footprint as f64 / items as f64
    );
    per
}

/// Lets the epoch collector free what headcount retired (replaced topic
/// table arrays), so it is not counted as live.
fn settle() {
    for _ in 0..16 {
        crossbeam_epoch::pin().flush();
    }
}

/// Returns the worst requested bytes per pair of headcount's pair scenarios.
fn memory(o: &Options) -> f64 {
    let s = o.mem_scale;
    let (conns_1, conns_10, topics) = ((o.mem_conns / s).max(1), 100_000 / s, (o.mem_topics / s).max(1));
    let keys = Keys::new(1000);
    println!();
    println!("### Memory (counting global allocator)");
    println!();
    println!("| scenario | items | MiB requested | B/item requested | B/item malloc footprint |");
    println!("|---|---:|---:|---:|---:|");

    let (empty, bytes, foot) = measure_memory(Counter::new);
    println!(
        "| empty `Counter` ({} stripes): fixed cost, total | 1 | {:.2} | {bytes} | {foot} |",
        empty.stripes(),
        bytes as f64 / 1048576.0
    );
    drop(empty);

    // Pairs: the 1000 topics exist before measuring, so only membership
    // (and nothing per topic) is in the figure.
    let with_topics = || {
        let c = Counter::new();
        for k in 0..keys.names.len() {
            c.add(keys.bytes(k), 0).unwrap();
        }
        c
    };
    let c = with_topics();
    let (_, bytes, foot) = measure_memory(|| {
        for conn in 0..conns_1 {
            c.track(keys.bytes(conn % 1000), conn as u64).unwrap();
        }
    });
    assert_eq!(c.pairs(), conns_1);
    let mut worst =
        mem_row(&format!("headcount: {conns_1} conns x 1 topic (1000 topics), per pair"), conns_1, bytes, foot);
    drop(c);

    let c = with_topics();
    let (_, bytes, foot) = measure_memory(|| {
        for conn in 0..conns_10 {
            for j in 0..10 {
                c.track(keys.bytes((conn + j * 100) % 1000), conn as u64).unwrap();
            }
        }
    });
    assert_eq!(c.pairs(), conns_10 * 10);
    worst = worst.max(mem_row(
        &format!("headcount: {conns_10} conns x 10 topics (1000 topics), per pair"),
        conns_10 * 10,
        bytes,
        foot,
    ));
    drop(c);

    // The simple model, for comparison: topic -> set of conns (it cannot do
    // `untrack_all` without a scan; headcount keeps conn -> topics).
    let (model, bytes, foot) = measure_memory(|| {
        let mut m: HashMap<String, HashSet<u64, Hasher>, Hasher> = HashMap::default();
        for conn in 0..conns_1 {
            m.entry(keys.str(conn % 1000).to_owned()).or_default().insert(conn as u64);
        }
        m
    });
    mem_row(&format!("`HashMap<String,HashSet<u64>>`: {conns_1} conns x 1 topic, per pair"), conns_1, bytes, foot);
    drop(model);

    // Topics: a fresh counter each, so the fixed cost above is not in it.
    let names: Vec<String> = (0..topics).map(topic_name).collect();
    for stripes in [None, Some(16)] {
        let c = Counter::with_config(CounterConfig { stripes, ..Default::default() });
        let (_, bytes, foot) = measure_memory(|| {
            for n in &names {
                c.add(n.as_bytes(), 1).unwrap();
            }
            settle();
        });
        assert_eq!(c.topics(), topics);
        mem_row(
            &format!("headcount, {} stripes: {topics} topics (16 B names), per topic", c.stripes()),
            topics,
            bytes,
            foot,
        );
        drop(c);
    }
    let (m, bytes, foot) = measure_memory(|| {
        let m: papaya::HashMap<String, AtomicI64, Hasher> = papaya::HashMap::with_hasher(Hasher::default());
        for n in &names {
            m.pin().insert(n.clone(), AtomicI64::new(1));
        }
        m
    });
    mem_row(&format!("`papaya::HashMap<String,AtomicI64>`: {topics} topics, per topic"), topics, bytes, foot);
    drop(m);
    worst
}

// ---------------------------------------------------------------------------

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("model name")).map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".to_owned())
}

fn main() {
    let o = options();
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "headcount local bench{}: cpu \"{}\", {cpus} cpus, cpu source {:?}, {} stripes; load avg {}",
        if o.smoke { " (SMOKE RUN: pass --bench for real numbers)" } else { "" },
        cpu_model(),
        headcount::cpu_source(),
        Counter::new().stripes(),
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" "),
    );
    println!(
        "threads {:?}, {} keys ({}), {} s per run, {} rounds (median), pin {}",
        o.threads,
        o.keys,
        if o.zipf { "zipf s=1.0" } else { "uniform" },
        o.secs,
        o.rounds,
        o.pin
    );

    let mut timed = None;
    if o.time {
        let keys: &'static Keys = Box::leak(Box::new(Keys::new(o.keys)));
        let max_threads = *o.threads.iter().max().unwrap_or(&1);
        let streams: &'static [Box<[u32]>] = Box::leak(streams(o.keys, max_threads, o.zipf).into_boxed_slice());
        let entries = entries(&o, keys, streams);
        let results = time_all(&o, &entries);
        print_tables(&o, &entries, &results);
        print_scaling(&o, &entries, &results);
        timed = Some((entries, results));
    }
    let mem_pair = o.memory.then(|| memory(&o));
    match timed {
        Some(_) if o.smoke => println!("\n(smoke run: no target verdicts; pass --bench)"),
        Some((entries, results)) => print_targets(&o, &entries, &results, mem_pair),
        None => {}
    }
}
