//! The change feed and ranked reads: `hc_watch` (a watch of a topic prefix,
//! with an fd to poll), `hc_top`, and `hc_list`, the immutable result both
//! hand back.
//!
//! A binding integrates a watch with its event loop through the fd
//! (`hc_watch_fd`): it polls readable while changes are pending
//! (level-triggered), so asyncio's `add_reader`, Go's netpoller or an Erlang
//! `enif_select` waits on it and then calls `hc_watch_next(w, 0, &list)`,
//! which never blocks with a timeout of 0.

use std::ffi::c_int;
use std::os::fd::AsRawFd;
use std::time::Duration;

use headcount::Watch;

use crate::boundary::{catch, guard, try_mut, try_ref, try_topic, Failure, Out};
use crate::hc_node;
use crate::status::hc_status;

/// `hc_watch_new` flag: the first batch holds every matching topic whose
/// count is non-zero.
pub const HC_WATCH_INITIAL: u32 = 1;

/// A watch of every topic starting with a prefix, from `hc_watch_new`.
///
/// Free with `hc_watch_free`, before or after its node (a watch whose node
/// was freed reports `HC_ERR_CLOSED`). Not thread-safe: calls on one watch
/// must not overlap (use it from one thread at a time, or under a lock of
/// your own). Its fd number never changes, so an event loop fetches it once
/// with `hc_watch_fd` and then polls it while nothing else runs on the
/// watch. Different watches are independent.
#[derive(Debug)]
pub struct hc_watch(Watch);

/// One entry of an `hc_list`.
#[derive(Debug)]
struct Item {
    topic: Box<[u8]>,
    count: u64,
    users: u64,
}

/// An immutable list of (topic, count, users): a batch of changes from
/// `hc_watch_next`, or the result of `hc_top`.
///
/// Read with `hc_list_len` and `hc_list_get`, free with `hc_list_free`.
/// Nothing changes it after it is returned, so any number of threads may
/// read it at once; `hc_list_free` must not race them.
#[derive(Debug)]
pub struct hc_list(Vec<Item>);

/// Starts watching every topic that starts with the `prefix_len` bytes at
/// `prefix` (`prefix_len` 0: every topic; `prefix` may then be NULL).
///
/// A watch is told of every change of a matching topic's cluster-wide
/// count: a local track or untrack (with the flush that ships it), a peer's
/// report, a peer going down, expired or coming back. Changes are coalesced
/// per topic (a batch names a topic once, with its latest count) and a
/// watch that is never read holds at most one pending entry per distinct
/// matching topic; it never slows the node. `flags` is 0 or
/// `HC_WATCH_INITIAL` (the first batch then holds every matching topic
/// whose count is non-zero).
///
/// Ownership: on success `*watch_out` is a new watch the caller frees with
/// `hc_watch_free`; it holds one file descriptor (`hc_watch_fd`). Returns
/// `HC_ERR_NULL_ARG` for a NULL `node` or `watch_out` (or a NULL `prefix`
/// with `prefix_len > 0`), `HC_ERR_INVALID_TOPIC` for a `prefix_len` over
/// `max_topic_len`, `HC_ERR_INVALID_ARG` for an unknown flag, `HC_ERR_IO`
/// when no fd is left, `HC_ERR_CLOSED` on a closed node. The caller keeps
/// ownership of `prefix`. Thread-safe; never blocks on I/O (with
/// `HC_WATCH_INITIAL` it scans every topic once).
#[no_mangle]
pub extern "C" fn hc_watch_new(
    node: *const hc_node,
    prefix: *const u8,
    prefix_len: usize,
    flags: u32,
    watch_out: *mut *mut hc_watch,
) -> hc_status {
    guard("hc_watch_new", || {
        // SAFETY: the caller passes NULL or a live node.
        let node = unsafe { &try_ref(node, "node")?.0 };
        // SAFETY: the caller passes NULL or a pointer valid for a write.
        let watch_out = unsafe { Out::required(watch_out, "watch_out") }?;
        // SAFETY: the caller passes `prefix` valid for `prefix_len` bytes.
        let prefix = unsafe { try_topic(node, prefix, prefix_len) }?;
        if flags & !HC_WATCH_INITIAL != 0 {
            return Err(Failure::new(hc_status::HC_ERR_INVALID_ARG, format!("unknown flags {flags:#x}")));
        }
        let watch = node.watch(prefix, flags & HC_WATCH_INITIAL != 0)?;
        watch_out.write(Box::into_raw(Box::new(hc_watch(watch))));
        Ok(())
    })
}

/// Takes the changes pending on `watch`, waiting up to `timeout_ms`
/// milliseconds for some to arrive (0: do not wait; negative: wait until
/// there are some or the node closes).
///
/// On `HC_OK`, `*list_out` is a new list (empty on timeout) of (topic, new
/// cluster-wide count, users), each topic at most once, that the caller
/// frees with `hc_list_free`. Returns `HC_ERR_NULL_ARG` for a NULL `watch`
/// or `list_out`, and `HC_ERR_CLOSED` once the node is closed and every
/// change delivered before was taken. May block up to `timeout_ms`; not
/// concurrently with another call on the same watch (see `hc_watch`).
#[no_mangle]
pub extern "C" fn hc_watch_next(watch: *mut hc_watch, timeout_ms: i64, list_out: *mut *mut hc_list) -> hc_status {
    guard("hc_watch_next", || {
        // SAFETY: the caller passes NULL or a live watch that no other
        // thread uses during this call (see `hc_watch`).
        let watch = unsafe { &mut try_mut(watch, "watch")?.0 };
        // SAFETY: the caller passes NULL or a pointer valid for a write.
        let list_out = unsafe { Out::required(list_out, "list_out") }?;
        let timeout = u64::try_from(timeout_ms).map_or(Duration::MAX, Duration::from_millis);
        let batch = watch.next_batch(timeout)?;
        let items = batch.into_iter().map(|c| Item { topic: c.topic.into(), count: c.count, users: c.users });
        list_out.write(Box::into_raw(Box::new(hc_list(items.collect()))));
        Ok(())
    })
}

/// The file descriptor of `watch`: it polls readable (`POLLIN`) while
/// changes are pending, and always once the node is closed. Level-triggered:
/// it stays readable until `hc_watch_next` takes the changes. Returns -1 for
/// a NULL `watch`.
///
/// Ownership: the fd belongs to the watch; do not read, write or close it,
/// and stop polling it before `hc_watch_free`. Not concurrently with another
/// call on the same watch (see `hc_watch`); never blocks.
#[no_mangle]
pub extern "C" fn hc_watch_fd(watch: *const hc_watch) -> c_int {
    catch("hc_watch_fd", || {
        // SAFETY: the caller passes NULL or a live watch.
        let watch = unsafe { try_ref(watch, "watch") }?;
        Ok(watch.0.as_raw_fd())
    })
    .unwrap_or(-1)
}

/// Ends and frees `watch` (and closes its fd). NULL is ignored.
///
/// Must not race any other call on the same watch, and must be called once.
/// Never blocks.
#[no_mangle]
pub extern "C" fn hc_watch_free(watch: *mut hc_watch) {
    let _ = catch("hc_watch_free", || {
        if !watch.is_null() {
            // SAFETY: a non-NULL `watch` came from `hc_watch_new` (made with
            // `Box::into_raw`), and per the contract nothing else uses it now
            // and it is freed once.
            drop(unsafe { Box::from_raw(watch) });
        }
        Ok(())
    });
}

/// The `k` topics starting with the `prefix_len` bytes at `prefix` (0: any
/// topic) with the highest cluster-wide counts, highest first, ties broken
/// by topic bytes ascending; topics at zero are not listed. Exact, by a scan
/// of every topic.
///
/// On `HC_OK`, `*list_out` is a new list of at most `k` entries (users equal
/// to count) that the caller frees with `hc_list_free`. Errors as for
/// `hc_watch_new`'s `node` and `prefix`, and `HC_ERR_NULL_ARG` for a NULL
/// `list_out`. Thread-safe; never blocks on I/O.
#[no_mangle]
pub extern "C" fn hc_top(
    node: *const hc_node,
    prefix: *const u8,
    prefix_len: usize,
    k: usize,
    list_out: *mut *mut hc_list,
) -> hc_status {
    guard("hc_top", || {
        // SAFETY: the caller passes NULL or a live node.
        let node = unsafe { &try_ref(node, "node")?.0 };
        // SAFETY: the caller passes NULL or a pointer valid for a write.
        let list_out = unsafe { Out::required(list_out, "list_out") }?;
        // SAFETY: the caller passes `prefix` valid for `prefix_len` bytes.
        let prefix = unsafe { try_topic(node, prefix, prefix_len) }?;
        let top = node.top(k, prefix)?;
        let items = top.into_iter().map(|(t, n)| Item { topic: t.into(), count: n, users: n });
        list_out.write(Box::into_raw(Box::new(hc_list(items.collect()))));
        Ok(())
    })
}

/// The number of entries in `list` (0 for NULL). Thread-safe; never blocks.
#[no_mangle]
pub extern "C" fn hc_list_len(list: *const hc_list) -> usize {
    // SAFETY: the caller passes NULL or a live list.
    catch("hc_list_len", || Ok(unsafe { try_ref(list, "list") }?.0.len())).unwrap_or(0)
}

/// Reads entry `i` of `list`: its topic (`*topic_out`, `*topic_len_out`
/// bytes, not NUL-terminated), its count and its users. Each out-pointer
/// may be NULL to skip it.
///
/// Ownership: the topic bytes belong to the list and stay valid, unchanged,
/// until `hc_list_free(list)`. Returns `HC_ERR_NULL_ARG` for a NULL `list`
/// and `HC_ERR_INVALID_ARG` for `i >= hc_list_len(list)`. Thread-safe;
/// never blocks.
#[no_mangle]
pub extern "C" fn hc_list_get(
    list: *const hc_list,
    i: usize,
    topic_out: *mut *const u8,
    topic_len_out: *mut usize,
    count_out: *mut u64,
    users_out: *mut u64,
) -> hc_status {
    guard("hc_list_get", || {
        // SAFETY: the caller passes NULL or a live list.
        let list = unsafe { try_ref(list, "list") }?;
        let Some(item) = list.0.get(i) else {
            let len = list.0.len();
            return Err(Failure::new(hc_status::HC_ERR_INVALID_ARG, format!("index {i} out of range (length {len})")));
        };
        // SAFETY: the caller passes NULL or a pointer valid for a write.
        put(unsafe { Out::optional(topic_out) }, item.topic.as_ptr());
        // SAFETY: as above.
        put(unsafe { Out::optional(topic_len_out) }, item.topic.len());
        // SAFETY: as above.
        put(unsafe { Out::optional(count_out) }, item.count);
        // SAFETY: as above.
        put(unsafe { Out::optional(users_out) }, item.users);
        Ok(())
    })
}

/// Writes `value` to an optional out-parameter the caller did not pass as NULL.
fn put<T>(out: Option<Out<T>>, value: T) {
    if let Some(o) = out {
        o.write(value);
    }
}

/// Frees `list` and the topic bytes it handed out. NULL is ignored. Must
/// not race any other call on the same list, and must be called once.
#[no_mangle]
pub extern "C" fn hc_list_free(list: *mut hc_list) {
    let _ = catch("hc_list_free", || {
        if !list.is_null() {
            // SAFETY: a non-NULL `list` came from `hc_watch_next` or `hc_top`
            // (made with `Box::into_raw`), and per the contract nothing else
            // uses it now and it is freed once.
            drop(unsafe { Box::from_raw(list) });
        }
        Ok(())
    });
}
