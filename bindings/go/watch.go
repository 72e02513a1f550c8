package headcount

/*
#include "hcgo.h"
*/
import "C"

import (
	"fmt"
	"os"
	"runtime"
	"sync"
	"syscall"
	"time"
	"unsafe"
)

// Change is a topic's new cluster-wide count, as a watch delivers it.
type Change struct {
	Topic string
	// Count is the topic's cluster-wide count on this node (what Count
	// returns), 0 for a topic that emptied.
	Count uint64
	// Users is the number of distinct users in the topic (equal to Count
	// until the library counts distinct users).
	Users uint64
}

// TopicCount is one entry of Top.
type TopicCount struct {
	Topic string
	Count uint64
}

// WatchInitial is the Watch flag that makes the first batch hold every
// matching topic whose count is non-zero.
const WatchInitial = uint32(C.HC_WATCH_INITIAL)

// watchPoll bounds how long the delivery goroutine of a watch that Go's
// poller cannot wait on (see Watch) stays in the library before it looks
// at Close again.
const watchPoll = 50 * time.Millisecond

// Watch delivers the changes of every topic that starts with a prefix, in
// batches on C, from one goroutine of its own.
//
// A batch names a topic at most once, with its latest count; a consumer
// that falls behind does not slow the node: the library coalesces pending
// changes per topic, and the goroutine waits with at most one batch in hand.
// After changes stop, the last value received for every matching topic is
// its Count (a topic that emptied ends at 0). A topic the watch never
// reported is at 0 as far as the watch is concerned, so a topic that was
// non-zero before the watch started (without WatchInitial) and empties is
// not reported.
//
// The goroutine waits in Go's own poller, on a duplicate of the library's
// file descriptor (hc_watch_fd; so a watch holds two fds), not in a cgo
// call: waiting watches hold no OS thread, and Close wakes the goroutine
// at once. Should the library's fd ever not be non-blocking, the goroutine
// instead waits in the library, up to 50ms at a time (and then holds an OS
// thread while it does).
//
// C is closed by Close, and also when the node is closed (after the
// changes pending then). A Watch must be closed to end its goroutine.
type Watch struct {
	// C receives the batches; never an empty one.
	C <-chan []Change

	c    chan []Change
	ptr  *C.hc_watch // owned by the delivery goroutine
	fd   *os.File    // the duplicate fd; nil where the poller cannot wait on it
	stop chan struct{}
	done chan struct{}
	once sync.Once
}

// Watch starts watching every topic that starts with prefix ("" for every
// topic). flags is 0 or WatchInitial. Errors: ErrInvalidTopic for a prefix
// longer than max_topic_len, ErrInvalidArg for an unknown flag, ErrIO when
// no file descriptor is left, ErrClosed on a closed node.
func (n *Node) Watch(prefix string, flags uint32) (*Watch, error) {
	p, err := n.acquire()
	if err != nil {
		return nil, err
	}
	t, l := topicArgs(prefix)
	r := C.hcgo_watch_new(p, t, l, C.uint32_t(flags))
	runtime.KeepAlive(prefix)
	n.mu.RUnlock()
	if err := newError(r.status, r.err); err != nil {
		return nil, err
	}
	fd, err := pollable(int(C.hc_watch_fd(r.watch)))
	if err != nil {
		C.hc_watch_free(r.watch)
		return nil, err
	}
	c := make(chan []Change)
	w := &Watch{C: c, c: c, ptr: r.watch, fd: fd, stop: make(chan struct{}), done: make(chan struct{})}
	go w.deliver()
	return w, nil
}

// waitInLibrary, set only by tests, makes new watches wait in the library
// as they would with a blocking fd.
var waitInLibrary bool

// pollable returns a duplicate of the library's fd as an *os.File that
// Go's poller waits on, or nil when the fd is not non-blocking (the poller
// needs that; the duplicate shares the flag, so it is only read here).
func pollable(fd int) (*os.File, error) {
	flags, _, errno := syscall.Syscall(syscall.SYS_FCNTL, uintptr(fd), syscall.F_GETFL, 0)
	if errno != 0 {
		return nil, &Error{Status: StatusIO, Message: fmt.Sprintf("fcntl(F_GETFL) of the watch fd: %v", errno)}
	}
	if flags&syscall.O_NONBLOCK == 0 || waitInLibrary {
		return nil, nil
	}
	dup, _, errno := syscall.Syscall(syscall.SYS_FCNTL, uintptr(fd), syscall.F_DUPFD_CLOEXEC, 0)
	if errno != 0 {
		return nil, &Error{Status: StatusIO, Message: fmt.Sprintf("duplicating the watch fd: %v", errno)}
	}
	return os.NewFile(dup, "headcount-watch"), nil
}

// deliver is the watch's goroutine: it takes batches from the library and
// hands them to C until Close or the node's end, then frees the watch.
func (w *Watch) deliver() {
	defer close(w.done)
	defer close(w.c)
	defer C.hc_watch_free(w.ptr) // only this goroutine ever used ptr
	var raw syscall.RawConn
	if w.fd != nil {
		defer w.fd.Close() // before hc_watch_free: leaves the poller first
		var err error
		if raw, err = w.fd.SyscallConn(); err != nil {
			return
		}
	}
	for {
		batch, ok := w.next(raw)
		if !ok {
			return // Close, or the node is gone and every change was taken
		}
		select {
		case w.c <- batch:
		case <-w.stop:
			return
		}
	}
}

// next waits for the next non-empty batch; false once the watch ends.
func (w *Watch) next(raw syscall.RawConn) ([]Change, bool) {
	var batch []Change
	ended := false
	take := func(timeout time.Duration) bool { // true when done waiting
		r := C.hcgo_watch_next(w.ptr, C.int64_t(timeout/time.Millisecond))
		if err := newError(r.status, r.err); err != nil {
			ended = true // ErrClosed
			return true
		}
		if r.len == 0 {
			return false
		}
		batch = changesOf(r)
		return true
	}
	if raw == nil {
		for {
			select {
			case <-w.stop:
				return nil, false
			default:
			}
			if take(watchPoll) {
				return batch, !ended
			}
		}
	}
	// Read calls the function, and while it returns false waits until the
	// fd is readable (or Close closes it, which ends Read with an error).
	// Nothing is read from the fd: hc_watch_next takes the changes.
	if err := raw.Read(func(uintptr) bool { return take(0) }); err != nil {
		return nil, false
	}
	return batch, !ended
}

// Close ends the watch: it wakes and waits for the goroutine, frees the
// library's watch and closes C. Idempotent and safe to call from any
// goroutine, concurrently with a receive on C, and after the node is
// closed. Always returns nil.
func (w *Watch) Close() error {
	w.once.Do(func() {
		close(w.stop)
		if w.fd != nil {
			w.fd.Close() // wakes a goroutine waiting in the poller
		}
	})
	<-w.done
	return nil
}

// takeList copies a non-empty list from the C shim into Go memory (and
// frees it), calling f with each entry in order. The topics are substrings
// of one string holding the whole list's topic bytes (one allocation per
// list, not per entry).
func takeList(r C.hcgo_list_result, f func(i int, topic string, count, users uint64)) {
	bytes := make([]byte, int(r.bytes)+1) // +1: never empty, so &bytes[0] exists
	nums := make([]uint64, 3*int(r.len))
	C.hcgo_list_take(r.list, (*C.uint8_t)(unsafe.Pointer(&bytes[0])), (*C.uint64_t)(unsafe.Pointer(&nums[0])))
	all := string(bytes[:r.bytes])
	start := uint64(0)
	for i := 0; i < int(r.len); i++ {
		end := nums[3*i]
		f(i, all[start:end], nums[3*i+1], nums[3*i+2])
		start = end
	}
}

func changesOf(r C.hcgo_list_result) []Change {
	out := make([]Change, r.len)
	takeList(r, func(i int, topic string, count, users uint64) {
		out[i] = Change{Topic: topic, Count: count, Users: users}
	})
	return out
}

// Top returns the k topics that start with prefix ("" for any) with the
// highest cluster-wide counts, highest first, ties broken by topic bytes
// ascending; topics at zero are not listed. Exact, by a scan of every
// topic. Errors: ErrInvalidArg for a negative k, ErrInvalidTopic for a
// prefix longer than max_topic_len, ErrClosed on a closed node.
func (n *Node) Top(k int, prefix string) ([]TopicCount, error) {
	if k < 0 {
		return nil, &Error{Status: StatusInvalidArg, Message: fmt.Sprintf("top: k = %d is negative", k)}
	}
	p, err := n.acquire()
	if err != nil {
		return nil, err
	}
	t, l := topicArgs(prefix)
	r := C.hcgo_top(p, t, l, C.size_t(k))
	runtime.KeepAlive(prefix)
	n.mu.RUnlock()
	if err := newError(r.status, r.err); err != nil {
		return nil, err
	}
	out := make([]TopicCount, r.len)
	if r.len == 0 {
		return out, nil
	}
	takeList(r, func(i int, topic string, count, _ uint64) {
		out[i] = TopicCount{Topic: topic, Count: count}
	})
	return out, nil
}
