//! The C ABI of headcount: `libheadcount.so` / `libheadcount.a` and
//! `include/headcount.h` (generated from this crate by cbindgen; see
//! `ffi/cbindgen.toml` and `scripts/check-header.sh`).
//!
//! Every export is an ordinary `#[no_mangle] pub extern "C" fn` whose body
//! runs inside [`boundary::guard`] / [`boundary::catch`]: a Rust panic
//! becomes `HC_ERR_PANIC` and never unwinds into C. Pointers are checked by
//! the helpers in `boundary`, out-parameters are written only on success,
//! and a failure's message is kept per thread for `hc_last_error()`.
//!
//! The names, signatures and semantics are a contract (issue 4): bindings
//! for Go, Python and Erlang and outside programs are written against them.

// The exported types keep their C names (`hc_status`, `hc_node`, ...), so that
// the header reads like the contract.
#![allow(non_camel_case_types)]
// These functions are called from C, where every call is "unsafe": the
// pointer contract of each is stated in its doc comment (and the header), and
// every dereference goes through a checked helper in `boundary` with its own
// SAFETY comment. Marking them `unsafe extern "C"` would change nothing for C.
#![allow(clippy::not_unsafe_ptr_arg_deref)]

// The panic boundary is `catch_unwind`: with panic=abort a bug would abort the
// host process instead of returning HC_ERR_PANIC.
#[cfg(panic = "abort")]
compile_error!("headcount-ffi must be built with panic = \"unwind\" (its panic boundary relies on it)");

mod boundary;
mod log;
mod status;
mod watch;

use boundary::{catch, guard, try_cstr, try_mut, try_ref, try_topic, Failure, Out, OutStr};
use headcount::{Config, Node};
use std::ffi::c_char;

pub use log::{hc_log_callback, hc_log_level, hc_set_log_callback};
pub use status::{hc_status, RawStatus};
pub use watch::{
    hc_list, hc_list_free, hc_list_get, hc_list_len, hc_top, hc_watch, hc_watch_fd, hc_watch_free, hc_watch_new,
    hc_watch_next, HC_WATCH_INITIAL,
};

/// A node configuration: string keys and values, checked as they are set.
///
/// Create with `hc_config_new`, fill with `hc_config_set`, free with
/// `hc_config_free`. Not thread-safe: do not call `hc_config_set` on one
/// config from two threads at once, nor while `hc_node_start` reads it. A
/// node copies what it needs, so the config may be freed (or reused for
/// another node) as soon as `hc_node_start` returns.
#[derive(Debug)]
pub struct hc_config(Config);

/// A running node.
///
/// Start with `hc_node_start`, stop and free with `hc_node_free`. Every
/// function that takes an `hc_node` may be called from many threads at once,
/// except `hc_node_free`, which must not race any other call on the same node
/// (after it returns, the pointer is gone).
#[derive(Debug)]
pub struct hc_node(Node);

/// A topic's cluster-wide count, with how fresh and complete it is.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct hc_topic_count {
    /// This node's count plus the last count reported by every live peer.
    pub count: u64,
    /// This node's own exact count.
    pub local: u64,
    /// Live peers that have reported this topic.
    pub peers_reporting: u32,
    /// Peers currently known (up, or down but within `down_grace_ms`).
    pub peers_known: u32,
    /// Age in milliseconds of the oldest peer report summed into `count`
    /// (0 when no peer report is included).
    pub oldest_report_age_ms: u64,
}

impl From<headcount::TopicCount> for hc_topic_count {
    fn from(c: headcount::TopicCount) -> Self {
        hc_topic_count {
            count: c.count,
            local: c.local,
            peers_reporting: c.peers_reporting,
            peers_known: c.peers_known,
            oldest_report_age_ms: c.oldest_report_age_ms,
        }
    }
}

/// Creates an empty configuration (a local-only node with default settings).
///
/// Ownership: the caller owns the result and frees it with `hc_config_free`.
/// Returns NULL only if the library hit an internal error (see
/// `hc_last_error`). Thread-safe; never blocks.
#[no_mangle]
pub extern "C" fn hc_config_new() -> *mut hc_config {
    catch("hc_config_new", || Ok(Box::into_raw(Box::new(hc_config(Config::new()))))).unwrap_or(std::ptr::null_mut())
}

/// Sets configuration `key` to `value`; both are NUL-terminated UTF-8.
///
/// Keys (numbers are decimal; every key is in `headcount::CONFIG_TABLE`):
///
/// <!-- config-keys: rendered from CONFIG_TABLE (core/src/config.rs); checked by core/tests/config_docs.rs -->
/// - `node_name` (1..=255 bytes of UTF-8; default `node-<random>`): this node's name, shown to its peers.
/// - `listen` (`host:port`; default none (no listener)): address to accept peers on (port 0: any free port).
/// - `advertise` (`host:port`; default the bound `listen` address): address peers dial to reach this node (NAT, proxies).
/// - `seeds` (comma-separated `host:port`; default none): nodes to join (one live member is enough).
/// - `cluster` (1..=255 bytes of UTF-8; default `headcount`): cluster name; nodes of other clusters are refused.
/// - `secret` (non-empty; default none): shared secret for HMAC-SHA256 peer authentication; required with `listen` or `seeds`.
/// - `flush_interval_ms` (1..=60000; default 100): how often changed counts are shipped to peers, in milliseconds (with `flush_mode` `adaptive`: at most how often).
/// - `flush_mode` (`adaptive` or `fixed`; default `adaptive`): `adaptive`: the first change after a quiet interval is shipped at once, then at most one flush per interval; `fixed`: one flush per interval.
/// - `down_after_ms` (1..=3600000; default 1000): silence after which a peer is down, in milliseconds.
/// - `handshake_timeout_ms` (1..=60000; default 1000): how long a peer connection may take to authenticate (HELLO and AUTH: about two round trips), in milliseconds; at most 32 accepted connections, 8 per source address, may be authenticating at once.
/// - `down_grace_ms` (0..=3600000; default 0): how long a down peer's counts are still summed, in milliseconds.
/// - `max_topic_len` (1..=65535; default 1024): longest topic, in bytes.
/// - `max_peer_topics` (1..=16777216; default 16777216): most topics one peer may define on a connection (its snapshot's size); a peer past it is refused with BYE PEER_TOO_LARGE and its counts dropped.
/// - `max_peer_topic_bytes` (1..=1099511627776; default 536870912): most bytes of topic names one peer may define on a connection; a peer past it is refused with BYE PEER_TOO_LARGE and its counts dropped.
/// - `gc_after_ms` (0..=86400000; default 60000): how long a topic sits at zero before it is collected, in milliseconds.
/// - `metrics_listen` (`host:port`; default none (no metrics server)): address to serve `/metrics` (Prometheus), `/healthz` and `/readyz` on over HTTP (port 0: any free port; docs/OPERATIONS.md).
/// - `log_format` (`text` or `json`; default `text`): format of this node's log lines on stderr: `text` for people, `json` (one object per line: ts, level, target, node, message) for log shippers (docs/OPERATIONS.md, "Logs").
/// <!-- /config-keys -->
///
/// Returns `HC_ERR_NULL_ARG` if `cfg`, `key` or `value` is NULL, and
/// `HC_ERR_CONFIG` for an unknown key, an invalid value, or a key or value
/// that is not UTF-8; on any error the config is unchanged. The strings are
/// copied; the caller keeps ownership of them. Not thread-safe for one
/// `cfg` (see `hc_config`); never blocks.
#[no_mangle]
pub extern "C" fn hc_config_set(cfg: *mut hc_config, key: *const c_char, value: *const c_char) -> hc_status {
    guard("hc_config_set", || {
        // SAFETY: the caller passes NULL or a live config no other thread is using.
        let cfg = unsafe { try_mut(cfg, "cfg") }?;
        // SAFETY: the caller passes NULL or a NUL-terminated string.
        let key = unsafe { try_cstr(key, "key") }?;
        // SAFETY: as for `key`.
        let value = unsafe { try_cstr(value, "value") }?;
        let key = key
            .to_str()
            .map_err(|_| Failure::new(hc_status::HC_ERR_CONFIG, format!("key {key:?} is not valid UTF-8")))?;
        let value = value.to_str().map_err(|_| {
            Failure::new(hc_status::HC_ERR_CONFIG, format!("config key {key:?}: the value is not valid UTF-8"))
        })?;
        cfg.0.set(key, value)?;
        Ok(())
    })
}

/// Frees a configuration made by `hc_config_new`. NULL is fine (nothing
/// happens). Nodes started from it are unaffected. Must not race other calls
/// on the same `cfg`; never blocks.
#[no_mangle]
pub extern "C" fn hc_config_free(cfg: *mut hc_config) {
    let _ = catch("hc_config_free", || {
        if !cfg.is_null() {
            // SAFETY: a non-NULL `cfg` came from `hc_config_new` (which made
            // it with `Box::into_raw`) and, per the contract, is freed once.
            drop(unsafe { Box::from_raw(cfg) });
        }
        Ok(())
    });
}

/// Starts a node from `cfg` and, on success, stores it in `*node_out`.
///
/// Validates the configuration as a whole (for example `listen` without
/// `secret` is `HC_ERR_CONFIG`), binds the listener if `listen` is set
/// (`HC_ERR_IO` if that fails), and starts the node's background threads.
/// May block briefly (socket setup, name resolution of `listen`).
///
/// Ownership: the caller owns `*node_out` and frees it with `hc_node_free`.
/// `cfg` is only read: the caller still owns it and may free it as soon as
/// this returns. `*node_out` is written only on success. Returns
/// `HC_ERR_NULL_ARG` if `cfg` or `node_out` is NULL. Thread-safe, as long as
/// no thread is changing `cfg`.
#[no_mangle]
pub extern "C" fn hc_node_start(cfg: *const hc_config, node_out: *mut *mut hc_node) -> hc_status {
    guard("hc_node_start", || {
        // SAFETY: the caller passes NULL or a live config that no one changes meanwhile.
        let cfg = unsafe { try_ref(cfg, "cfg") }?;
        // SAFETY: the caller passes NULL or a pointer valid for a write of `hc_node *`.
        let node_out = unsafe { Out::required(node_out, "node_out") }?;
        let node = Node::start(&cfg.0)?;
        node_out.write(Box::into_raw(Box::new(hc_node(node))));
        Ok(())
    })
}

/// Stops a node and frees it. NULL is fine (nothing happens).
///
/// A graceful leave: peers are told this node is leaving, so they drop its
/// counts at once, and its background threads are joined before this
/// returns. Blocks until then (normally well under a flush interval).
/// Must not race any other call on the same node: after it returns, `node`
/// is gone. Must not be called twice on one node.
#[no_mangle]
pub extern "C" fn hc_node_free(node: *mut hc_node) {
    let _ = catch("hc_node_free", || {
        if !node.is_null() {
            // SAFETY: a non-NULL `node` came from `hc_node_start` (which made
            // it with `Box::into_raw`), and per the contract no other call
            // uses it now and it is freed once.
            let node = unsafe { Box::from_raw(node) };
            node.0.close();
        }
        Ok(())
    });
}

/// Writes the address the node listens on (`ip:port`, with the port actually
/// bound, e.g. `127.0.0.1:40512`) into `buf` as a NUL-terminated string and
/// its length (without the NUL) into `*len_out`.
///
/// A node without `listen` writes the empty string (`*len_out = 0`) and
/// returns `HC_OK`. If `cap` is too small for the address and its NUL,
/// returns `HC_ERR_BUFFER_TOO_SMALL`, leaves `buf` untouched and sets
/// `*len_out` to the length needed (without the NUL); `buf` may be NULL when
/// `cap` is 0, to ask for the length. `len_out` is required. Thread-safe;
/// never blocks.
#[no_mangle]
pub extern "C" fn hc_node_local_addr(
    node: *const hc_node,
    buf: *mut c_char,
    cap: usize,
    len_out: *mut usize,
) -> hc_status {
    guard("hc_node_local_addr", || {
        // SAFETY: the caller passes NULL or a live node.
        let node = unsafe { try_ref(node, "node") }?;
        // SAFETY: the caller passes `buf` valid for `cap` bytes (or NULL)
        // and `len_out` NULL or valid for a `size_t`.
        let out = unsafe { OutStr::new(buf, cap, len_out) }?;
        let addr = node.0.local_addr().map(|a| a.to_string()).unwrap_or_default();
        out.write(&addr)
    })
}

/// Asks the node to connect to another node at `addr` (`host:port`,
/// NUL-terminated UTF-8) and keep reconnecting to it; membership gossip then
/// spreads the rest of the cluster.
///
/// Returns `HC_ERR_NULL_ARG` for a NULL `node` or `addr`, and
/// `HC_ERR_INVALID_ARG` for an address that is not `host:port` or not UTF-8,
/// or when the node cannot have peers (a library built without
/// clustering). The connection itself is made in the
/// background: success means "will connect", not "connected". The caller
/// keeps ownership of `addr`. Thread-safe; may block on name resolution.
#[no_mangle]
pub extern "C" fn hc_node_add_peer(node: *mut hc_node, addr: *const c_char) -> hc_status {
    guard("hc_node_add_peer", || {
        // SAFETY: the caller passes NULL or a live node.
        let node = unsafe { try_ref(node, "node") }?;
        // SAFETY: the caller passes NULL or a NUL-terminated string.
        let addr = unsafe { try_cstr(addr, "addr") }?;
        let addr = addr
            .to_str()
            .map_err(|_| Failure::new(hc_status::HC_ERR_INVALID_ARG, format!("addr {addr:?} is not valid UTF-8")))?;
        node.0.add_peer(addr)?;
        Ok(())
    })
}

/// Records that connection `conn` is in `topic` (`topic_len` bytes, any
/// bytes, 1..=`max_topic_len`). Idempotent: tracking the same (topic, conn)
/// pair again changes nothing. If `added_out` is not NULL, `*added_out` is
/// set to whether the pair was new.
///
/// `topic_len == 0` is `HC_ERR_INVALID_TOPIC` (whatever `topic` is); a NULL
/// `topic` with `topic_len > 0` is `HC_ERR_NULL_ARG`; longer than
/// `max_topic_len` is `HC_ERR_INVALID_TOPIC`. The topic bytes are copied.
/// Thread-safe and lock-free on the counting path; never blocks on I/O.
#[no_mangle]
pub extern "C" fn hc_track(
    node: *mut hc_node,
    topic: *const u8,
    topic_len: usize,
    conn: u64,
    added_out: *mut bool,
) -> hc_status {
    guard("hc_track", || {
        // SAFETY: the caller passes NULL or a live node.
        let node = unsafe { &try_ref(node, "node")?.0 };
        // SAFETY: the caller passes NULL or a pointer valid for a `bool`.
        let added_out = unsafe { Out::optional(added_out) };
        // SAFETY: the caller passes `topic` valid for `topic_len` bytes.
        let topic = unsafe { try_topic(node, topic, topic_len) }?;
        let added = node.track(topic, conn)?;
        if let Some(out) = added_out {
            out.write(added);
        }
        Ok(())
    })
}

/// Records that connection `conn` left `topic`. Untracking a pair that is not
/// tracked changes nothing (counts never go negative). If `removed_out` is
/// not NULL, `*removed_out` is set to whether the pair was tracked.
///
/// Topic arguments as for `hc_track`. Thread-safe; never blocks on I/O.
#[no_mangle]
pub extern "C" fn hc_untrack(
    node: *mut hc_node,
    topic: *const u8,
    topic_len: usize,
    conn: u64,
    removed_out: *mut bool,
) -> hc_status {
    guard("hc_untrack", || {
        // SAFETY: the caller passes NULL or a live node.
        let node = unsafe { &try_ref(node, "node")?.0 };
        // SAFETY: the caller passes NULL or a pointer valid for a `bool`.
        let removed_out = unsafe { Out::optional(removed_out) };
        // SAFETY: the caller passes `topic` valid for `topic_len` bytes.
        let topic = unsafe { try_topic(node, topic, topic_len) }?;
        let removed = node.untrack(topic, conn)?;
        if let Some(out) = removed_out {
            out.write(removed);
        }
        Ok(())
    })
}

/// Untracks connection `conn` from every topic it is in: the "connection
/// closed" call. If `removed_out` is not NULL, `*removed_out` is set to the
/// number of topics it left. Thread-safe; never blocks on I/O.
#[no_mangle]
pub extern "C" fn hc_untrack_all(node: *mut hc_node, conn: u64, removed_out: *mut usize) -> hc_status {
    guard("hc_untrack_all", || {
        // SAFETY: the caller passes NULL or a live node.
        let node = unsafe { &try_ref(node, "node")?.0 };
        // SAFETY: the caller passes NULL or a pointer valid for a `size_t`.
        let removed_out = unsafe { Out::optional(removed_out) };
        let removed = node.untrack_all(conn)?;
        if let Some(out) = removed_out {
            out.write(removed);
        }
        Ok(())
    })
}

/// Adds `delta` (may be negative) to this node's count of `topic`, without
/// connection membership: for runtimes that keep membership themselves (the
/// Erlang NIF). The caller is responsible for never taking a count below
/// zero. Topic arguments as for `hc_track`. Thread-safe and lock-free.
#[no_mangle]
pub extern "C" fn hc_add(node: *mut hc_node, topic: *const u8, topic_len: usize, delta: i64) -> hc_status {
    guard("hc_add", || {
        // SAFETY: the caller passes NULL or a live node.
        let node = unsafe { &try_ref(node, "node")?.0 };
        // SAFETY: the caller passes `topic` valid for `topic_len` bytes.
        let topic = unsafe { try_topic(node, topic, topic_len) }?;
        node.add(topic, delta)?;
        Ok(())
    })
}

/// Stores the cluster-wide count of `topic` in `*count_out`: this node's
/// exact count plus the last count reported by each live peer. An unknown
/// topic counts 0. `count_out` is required. Topic arguments as for
/// `hc_track`. Thread-safe; takes no global lock; never blocks.
#[no_mangle]
pub extern "C" fn hc_count(node: *const hc_node, topic: *const u8, topic_len: usize, count_out: *mut u64) -> hc_status {
    guard("hc_count", || {
        // SAFETY: the caller passes NULL or a live node.
        let node = unsafe { &try_ref(node, "node")?.0 };
        // SAFETY: the caller passes NULL or a pointer valid for a `uint64_t`.
        let count_out = unsafe { Out::required(count_out, "count_out") }?;
        // SAFETY: the caller passes `topic` valid for `topic_len` bytes.
        let topic = unsafe { try_topic(node, topic, topic_len) }?;
        count_out.write(node.count(topic)?);
        Ok(())
    })
}

/// Stores this node's own exact count of `topic` in `*count_out`. As
/// `hc_count` otherwise.
#[no_mangle]
pub extern "C" fn hc_count_local(
    node: *const hc_node,
    topic: *const u8,
    topic_len: usize,
    count_out: *mut u64,
) -> hc_status {
    guard("hc_count_local", || {
        // SAFETY: the caller passes NULL or a live node.
        let node = unsafe { &try_ref(node, "node")?.0 };
        // SAFETY: the caller passes NULL or a pointer valid for a `uint64_t`.
        let count_out = unsafe { Out::required(count_out, "count_out") }?;
        // SAFETY: the caller passes `topic` valid for `topic_len` bytes.
        let topic = unsafe { try_topic(node, topic, topic_len) }?;
        count_out.write(node.count_local(topic)?);
        Ok(())
    })
}

/// Stores the count of `topic` together with how fresh and complete it is
/// (see `hc_topic_count`) in `*info_out`. `info_out` is required. As
/// `hc_count` otherwise.
#[no_mangle]
pub extern "C" fn hc_count_info(
    node: *const hc_node,
    topic: *const u8,
    topic_len: usize,
    info_out: *mut hc_topic_count,
) -> hc_status {
    guard("hc_count_info", || {
        // SAFETY: the caller passes NULL or a live node.
        let node = unsafe { &try_ref(node, "node")?.0 };
        // SAFETY: the caller passes NULL or a pointer valid for an `hc_topic_count`.
        let info_out = unsafe { Out::required(info_out, "info_out") }?;
        // SAFETY: the caller passes `topic` valid for `topic_len` bytes.
        let topic = unsafe { try_topic(node, topic, topic_len) }?;
        info_out.write(node.count_info(topic)?.into());
        Ok(())
    })
}

/// Stores the sum of all counts of all topics across the cluster in
/// `*total_out` (required). Thread-safe; walks every topic, so it costs
/// time in proportion to the number of topics.
#[no_mangle]
pub extern "C" fn hc_total(node: *const hc_node, total_out: *mut u64) -> hc_status {
    guard("hc_total", || {
        // SAFETY: the caller passes NULL or a live node.
        let node = unsafe { &try_ref(node, "node")?.0 };
        // SAFETY: the caller passes NULL or a pointer valid for a `uint64_t`.
        let total_out = unsafe { Out::required(total_out, "total_out") }?;
        total_out.write(node.total()?);
        Ok(())
    })
}

/// Writes the node's statistics as one line of JSON (a NUL-terminated UTF-8
/// object: topics, tracked pairs, flush times, per-peer state, ...) into
/// `buf`, and its length (without the NUL) into `*len_out`.
///
/// If `cap` is too small, returns `HC_ERR_BUFFER_TOO_SMALL`, leaves `buf`
/// untouched and sets `*len_out` to the length needed (without the NUL);
/// `buf` may be NULL when `cap` is 0. The length can change between two
/// calls, so retry with some slack (e.g. twice the length). `len_out` is
/// required. Thread-safe; never blocks on I/O.
#[no_mangle]
pub extern "C" fn hc_stats_json(node: *const hc_node, buf: *mut c_char, cap: usize, len_out: *mut usize) -> hc_status {
    guard("hc_stats_json", || {
        // SAFETY: the caller passes NULL or a live node.
        let node = unsafe { &try_ref(node, "node")?.0 };
        // SAFETY: the caller passes `buf` valid for `cap` bytes (or NULL)
        // and `len_out` NULL or valid for a `size_t`.
        let out = unsafe { OutStr::new(buf, cap, len_out) }?;
        out.write(&node.stats_json()?)
    })
}

/// A static, NUL-terminated description of `status`, starting with its name
/// (e.g. `"HC_ERR_NULL_ARG: ..."`). Any value is accepted: one that is not a
/// known status gives `"unknown hc_status"`. Never NULL; the caller must not
/// free it. Thread-safe; never blocks.
#[no_mangle]
pub extern "C" fn hc_status_str(status: RawStatus) -> *const c_char {
    catch("hc_status_str", || {
        Ok(hc_status::from_raw(status.0).map_or(c"unknown hc_status", hc_status::describe).as_ptr())
    })
    .unwrap_or(c"unknown hc_status".as_ptr())
}

/// The message of the last call that failed on the calling thread, e.g.
/// `"hc_track: topic is 2000 bytes; the limit (max_topic_len) is 1024
/// bytes"`, or `""` if none has failed on this thread.
///
/// Never NULL. The string belongs to the library: do not free it. It stays
/// valid, unchanged, until the next failing `hc_*` call on the same thread
/// (successful calls do not change it) or until the thread exits; copy it to
/// keep it longer. Thread-safe (each thread has its own); never blocks.
#[no_mangle]
pub extern "C" fn hc_last_error() -> *const c_char {
    catch("hc_last_error", || Ok(boundary::last_error())).unwrap_or(c"".as_ptr())
}

/// The library's version, e.g. `"0.1.0"`: static, NUL-terminated, never
/// NULL; do not free it. Thread-safe; never blocks.
#[no_mangle]
pub extern "C" fn hc_version() -> *const c_char {
    const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), "\0");
    catch("hc_version", || Ok(VERSION.as_ptr().cast())).unwrap_or(c"".as_ptr())
}
