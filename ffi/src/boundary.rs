//! What every export goes through: the panic boundary, the thread-local last
//! error, and the checks that turn raw C arguments into Rust references.
//!
//! These are rustls-ffi's `ffi_panic_boundary!`, `try_ref_from_ptr!` and
//! `try_slice!`, written as functions and a small [`Out`] type so that each
//! export stays an ordinary `extern "C" fn` cbindgen can read.
//!
//! Order inside an export: check every pointer first (so a NULL argument
//! fails before anything happens), then do the work, then write the
//! out-parameters. A failure writes no out-parameter (the one exception is
//! `len_out` on `HC_ERR_BUFFER_TOO_SMALL`).

use crate::status::hc_status;
use headcount::{Error, Node};
use std::any::Any;
use std::cell::RefCell;
use std::ffi::{c_char, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};

/// Why a call failed: the status it returns and the message
/// `hc_last_error()` will show.
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) status: hc_status,
    pub(crate) message: String,
}

impl Failure {
    pub(crate) fn new(status: hc_status, message: impl Into<String>) -> Self {
        Failure { status, message: message.into() }
    }

    /// A required pointer argument, named as in the C prototype, was NULL.
    pub(crate) fn null(what: &str) -> Self {
        Failure::new(hc_status::HC_ERR_NULL_ARG, format!("{what} is NULL"))
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        let status = match &e {
            Error::InvalidTopic { .. } => hc_status::HC_ERR_INVALID_TOPIC,
            Error::TooManyTopics | Error::InvalidArgument(_) => hc_status::HC_ERR_INVALID_ARG,
            Error::Config { .. } => hc_status::HC_ERR_CONFIG,
            Error::Io(_) => hc_status::HC_ERR_IO,
            Error::Closed => hc_status::HC_ERR_CLOSED,
            // `Error` is non_exhaustive: a variant added later is reported as
            // a bad argument until it is given a status of its own.
            _ => hc_status::HC_ERR_INVALID_ARG,
        };
        Failure::new(status, e.to_string())
    }
}

/// The result of an export's body.
pub(crate) type Outcome<T = ()> = Result<T, Failure>;

thread_local! {
    /// The message of the last failed call on this thread. Replaced (and the
    /// old one freed) only by the next failure, which is what makes the
    /// pointer `hc_last_error()` returns valid until then.
    static LAST_ERROR: RefCell<Option<CString>> = const { RefCell::new(None) };
}

/// Records `message` as this thread's last error, prefixed by `function`.
/// Never panics: during thread teardown, when the thread-local is gone, the
/// message is dropped.
pub(crate) fn set_last_error(function: &str, message: &str) {
    let text = format!("{function}: {message}").replace('\0', "\\0");
    // No NUL is left, so this cannot fail; an empty string is the fallback anyway.
    let text = CString::new(text).unwrap_or_default();
    let _ = LAST_ERROR.try_with(|slot| {
        if let Ok(mut slot) = slot.try_borrow_mut() {
            *slot = Some(text);
        }
    });
}

/// This thread's last error message, or `""` when no call has failed on it.
pub(crate) fn last_error() -> *const c_char {
    LAST_ERROR
        .try_with(|slot| slot.try_borrow().ok().and_then(|s| s.as_ref().map(|c| c.as_ptr())))
        .ok()
        .flatten()
        .unwrap_or(c"".as_ptr())
}

/// Runs `body` inside the panic boundary. A failure or a panic records its
/// message as this thread's last error and comes back as its status.
pub(crate) fn catch<T>(function: &'static str, body: impl FnOnce() -> Outcome<T>) -> Result<T, hc_status> {
    // `AssertUnwindSafe`: after a panic the caller gets HC_ERR_PANIC and may
    // keep using the node. The state `body` touches is the core's atomics
    // and parking_lot locks, which do not poison; a panic can at worst leave
    // a count that the next call corrects, never memory unsafety.
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(failure)) => {
            set_last_error(function, &failure.message);
            Err(failure.status)
        }
        Err(payload) => {
            set_last_error(function, &format!("panic: {}", panic_message(payload.as_ref())));
            Err(hc_status::HC_ERR_PANIC)
        }
    }
}

/// [`catch`] for the exports that return `hc_status`.
pub(crate) fn guard(function: &'static str, body: impl FnOnce() -> Outcome) -> hc_status {
    match catch(function, body) {
        Ok(()) => hc_status::HC_OK,
        Err(status) => status,
    }
}

fn panic_message(payload: &(dyn Any + Send)) -> &str {
    if let Some(s) = payload.downcast_ref::<&str>() {
        s
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s
    } else {
        "(no message)"
    }
}

/// Borrows the object behind a C pointer.
///
/// # Safety
/// `ptr` is NULL or points to a live `T` that nothing frees or mutates for `'a`.
pub(crate) unsafe fn try_ref<'a, T>(ptr: *const T, what: &str) -> Outcome<&'a T> {
    // SAFETY: the caller promises `ptr` is NULL (`as_ref` gives None) or
    // valid for `'a`.
    unsafe { ptr.as_ref() }.ok_or_else(|| Failure::null(what))
}

/// Borrows the object behind a C pointer mutably.
///
/// # Safety
/// `ptr` is NULL or points to a live `T` that nothing else uses for `'a`.
pub(crate) unsafe fn try_mut<'a, T>(ptr: *mut T, what: &str) -> Outcome<&'a mut T> {
    // SAFETY: the caller promises `ptr` is NULL (`as_mut` gives None) or
    // valid and unaliased for `'a`.
    unsafe { ptr.as_mut() }.ok_or_else(|| Failure::null(what))
}

/// Borrows a NUL-terminated C string.
///
/// # Safety
/// `ptr` is NULL or points to a NUL-terminated string that lives, unchanged,
/// for `'a`.
pub(crate) unsafe fn try_cstr<'a>(ptr: *const c_char, what: &str) -> Outcome<&'a CStr> {
    if ptr.is_null() {
        return Err(Failure::null(what));
    }
    // SAFETY: not NULL, and the caller promises a NUL-terminated string
    // valid for `'a`.
    Ok(unsafe { CStr::from_ptr(ptr) })
}

/// Borrows a topic: `len` bytes at `ptr`.
///
/// `len == 0` is the core's "topic is empty" error whatever `ptr` is; a NULL
/// `ptr` with `len > 0` is `HC_ERR_NULL_ARG`; a `len` over the node's
/// `max_topic_len` is rejected before any slice is formed, so an oversize
/// length never reads past the caller's buffer.
///
/// # Safety
/// When `0 < len <= max_topic_len`, `ptr` is NULL or valid for reads of
/// `len` bytes, unchanged for `'a`.
pub(crate) unsafe fn try_topic<'a>(node: &Node, ptr: *const u8, len: usize) -> Outcome<&'a [u8]> {
    if len == 0 {
        return Ok(&[]);
    }
    if ptr.is_null() {
        return Err(Failure::null("topic (with topic_len > 0)"));
    }
    let max = node.counter()?.max_topic_len();
    if len > max {
        return Err(Error::InvalidTopic { len, max }.into());
    }
    // SAFETY: `ptr` is not NULL, and the caller promises it is valid for
    // reads of `len` bytes for `'a` (`len <= max_topic_len <= 65535`, so it
    // is also far below `isize::MAX`).
    Ok(unsafe { std::slice::from_raw_parts(ptr, len) })
}

/// An out-parameter, checked for NULL before the work is done and written
/// only when it succeeds.
#[derive(Debug)]
pub(crate) struct Out<T>(*mut T);

impl<T> Out<T> {
    /// A required out-parameter.
    ///
    /// # Safety
    /// `ptr` is NULL or valid and aligned for a write of `T` for as long as
    /// the returned `Out` lives.
    pub(crate) unsafe fn required(ptr: *mut T, what: &str) -> Outcome<Out<T>> {
        if ptr.is_null() {
            return Err(Failure::null(what));
        }
        Ok(Out(ptr))
    }

    /// An out-parameter the caller may pass as NULL to ignore.
    ///
    /// # Safety
    /// As for [`Out::required`].
    pub(crate) unsafe fn optional(ptr: *mut T) -> Option<Out<T>> {
        (!ptr.is_null()).then_some(Out(ptr))
    }

    pub(crate) fn write(self, value: T) {
        // SAFETY: `self.0` is not NULL (checked when `self` was made) and the
        // maker of `self` promised it valid and aligned for a write of `T`.
        unsafe { self.0.write(value) }
    }
}

/// A caller's string buffer: `cap` bytes at `buf`, which may be NULL only
/// when `cap` is 0 (to ask for the length).
#[derive(Debug)]
pub(crate) struct OutStr {
    buf: *mut c_char,
    cap: usize,
    len_out: Out<usize>,
}

impl OutStr {
    /// # Safety
    /// `buf` is NULL or valid for writes of `cap` bytes, and `len_out` is
    /// NULL or valid for a write of `usize`, for as long as the returned
    /// `OutStr` lives.
    pub(crate) unsafe fn new(buf: *mut c_char, cap: usize, len_out: *mut usize) -> Outcome<OutStr> {
        if buf.is_null() && cap > 0 {
            return Err(Failure::null("buf (with cap > 0)"));
        }
        // SAFETY: forwarded from this function's contract.
        let len_out = unsafe { Out::required(len_out, "len_out") }?;
        Ok(OutStr { buf, cap, len_out })
    }

    /// Copies `s` and a terminating NUL into the buffer and its length into
    /// `*len_out`; or, when it does not fit, writes only `*len_out` and fails
    /// with `HC_ERR_BUFFER_TOO_SMALL`.
    pub(crate) fn write(self, s: &str) -> Outcome {
        let len = s.len();
        if len >= self.cap {
            let cap = self.cap;
            self.len_out.write(len);
            return Err(Failure::new(
                hc_status::HC_ERR_BUFFER_TOO_SMALL,
                format!("buffer of {cap} bytes is too small: {} bytes are needed ({len} and a NUL)", len + 1),
            ));
        }
        // SAFETY: `len + 1 <= cap`, so `buf` is not NULL (it may be NULL only
        // when cap is 0) and the maker of `self` promised it valid for writes
        // of `cap` bytes; `s` is a distinct Rust allocation, so the ranges do
        // not overlap.
        unsafe {
            std::ptr::copy_nonoverlapping(s.as_ptr(), self.buf.cast::<u8>(), len);
            self.buf.add(len).write(0);
        }
        self.len_out.write(len);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn last() -> String {
        // SAFETY: `last_error` returns a NUL-terminated string that lives
        // until the next failure on this thread.
        unsafe { CStr::from_ptr(last_error()) }.to_str().unwrap().to_owned()
    }

    #[test]
    fn a_panic_becomes_hc_err_panic_with_its_message() {
        let s = guard("hc_test", || panic!("boom {}", 42));
        assert_eq!(s, hc_status::HC_ERR_PANIC);
        assert_eq!(last(), "hc_test: panic: boom 42");
        let s = guard("hc_test", || std::panic::panic_any(7_u8));
        assert_eq!(s, hc_status::HC_ERR_PANIC);
        assert_eq!(last(), "hc_test: panic: (no message)");
    }

    #[test]
    fn success_keeps_the_last_error_and_its_pointer() {
        assert_eq!(guard("hc_a", || Err(Failure::null("x"))), hc_status::HC_ERR_NULL_ARG);
        let before = last_error();
        assert_eq!(guard("hc_b", || Ok(())), hc_status::HC_OK);
        assert_eq!(last_error(), before);
        assert_eq!(last(), "hc_a: x is NULL");
    }

    #[test]
    fn each_thread_has_its_own_last_error() {
        assert_eq!(guard("hc_a", || Err(Failure::null("x"))), hc_status::HC_ERR_NULL_ARG);
        std::thread::spawn(|| assert_eq!(last(), "")).join().unwrap();
        assert_eq!(last(), "hc_a: x is NULL");
    }

    #[test]
    fn interior_nuls_do_not_truncate_silently() {
        set_last_error("hc_a", "a\0b");
        assert_eq!(last(), "hc_a: a\\0b");
    }

    #[test]
    fn every_core_error_maps_to_its_status() {
        let cases = [
            (Error::InvalidTopic { len: 0, max: 1 }, hc_status::HC_ERR_INVALID_TOPIC),
            (Error::TooManyTopics, hc_status::HC_ERR_INVALID_ARG),
            (Error::InvalidArgument("x".into()), hc_status::HC_ERR_INVALID_ARG),
            (Error::Config { key: "k".into(), message: "m".into() }, hc_status::HC_ERR_CONFIG),
            (Error::Io(std::io::Error::other("x")), hc_status::HC_ERR_IO),
            (Error::Closed, hc_status::HC_ERR_CLOSED),
        ];
        for (e, want) in cases {
            let msg = e.to_string();
            let f = Failure::from(e);
            assert_eq!((f.status, f.message), (want, msg));
        }
    }

    #[test]
    fn out_str_fits_exactly_or_reports_the_length() {
        let mut buf = [0x55 as c_char; 4];
        let mut len = 99usize;
        // SAFETY: `buf` and `len` are live locals of the sizes given.
        let out = unsafe { OutStr::new(buf.as_mut_ptr(), buf.len(), &mut len) }.unwrap();
        let f = out.write("abcd").unwrap_err();
        assert_eq!((f.status, len), (hc_status::HC_ERR_BUFFER_TOO_SMALL, 4));
        assert_eq!(buf, [0x55; 4], "buffer untouched on failure");
        // SAFETY: as above.
        let out = unsafe { OutStr::new(buf.as_mut_ptr(), buf.len(), &mut len) }.unwrap();
        out.write("abc").unwrap();
        assert_eq!((len, buf), (3, [b'a' as c_char, b'b' as c_char, b'c' as c_char, 0]));
        // SAFETY: a NULL buffer with cap 0 is never written.
        let out = unsafe { OutStr::new(std::ptr::null_mut(), 0, &mut len) }.unwrap();
        assert_eq!(out.write("").unwrap_err().status, hc_status::HC_ERR_BUFFER_TOO_SMALL);
        assert_eq!(len, 0);
        // SAFETY: NULL with cap > 0 is rejected before any write.
        let e = unsafe { OutStr::new(std::ptr::null_mut(), 8, &mut len) }.unwrap_err();
        assert_eq!(e.status, hc_status::HC_ERR_NULL_ARG);
    }
}
