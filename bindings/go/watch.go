package headcount

/*
#include "hcgo.h"
*/
import "C"

import (
	"fmt"
	"runtime"
	"sync"
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

// watchPoll bounds how long the delivery goroutine waits in the library
// before it looks at Close again: the longest Close waits.
const watchPoll = 50 * time.Millisecond

// Watch delivers the changes of every topic that starts with a prefix, in
// batches on C, from one goroutine of its own.
//
// A batch names a topic at most once, with its latest count; a consumer
// that falls behind does not slow the node: the library coalesces pending
// changes per topic, and the goroutine waits with at most one batch in hand.
// After changes stop, the last value received for every matching topic is
// its Count (a topic that emptied ends at 0).
//
// C is closed by Close, and also when the node is closed (after the
// changes pending then). A Watch must be closed to end its goroutine.
type Watch struct {
	// C receives the batches; never an empty one.
	C <-chan []Change

	c    chan []Change
	ptr  *C.hc_watch // owned by the delivery goroutine
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
	c := make(chan []Change)
	w := &Watch{C: c, c: c, ptr: r.watch, stop: make(chan struct{}), done: make(chan struct{})}
	go w.deliver()
	return w, nil
}

// deliver is the watch's goroutine: it takes batches from the library and
// hands them to C until Close or the node's end, then frees the watch.
func (w *Watch) deliver() {
	defer close(w.done)
	defer close(w.c)
	defer C.hc_watch_free(w.ptr) // only this goroutine ever used ptr
	for {
		select {
		case <-w.stop:
			return
		default:
		}
		r := C.hcgo_watch_next(w.ptr, C.int64_t(watchPoll/time.Millisecond))
		if err := newError(r.status, r.err); err != nil {
			return // ErrClosed: the node is gone and every change was taken
		}
		if r.len == 0 {
			continue
		}
		batch := changesOf(r)
		select {
		case w.c <- batch:
		case <-w.stop:
			return
		}
	}
}

// Close ends the watch: it waits for the goroutine (at most about 50ms,
// the longest the library is asked to wait), frees the library's watch and
// closes C. Idempotent and safe to call from any goroutine, concurrently
// with a receive on C, and after the node is closed. Always returns nil.
func (w *Watch) Close() error {
	w.once.Do(func() { close(w.stop) })
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
