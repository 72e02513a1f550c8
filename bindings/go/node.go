package headcount

/*
#include "hcgo.h"
*/
import "C"

import (
	"fmt"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"
)

// Config configures a node. The zero value is a local-only node with the
// library's defaults. Every field maps to one key of the library's string
// configuration (hc_config_set); Options sets any key by name, including
// ones without a field here ("cluster", "down_grace_ms", "max_topic_len",
// "gc_after_ms", ...). Options are applied after the fields, in key order,
// so an option overrides the field of the same key.
type Config struct {
	// NodeName names the node in stats and peers' views ("node_name").
	// Empty: the library picks "node-<random>".
	NodeName string
	// Listen is the host:port to accept peers on ("listen"); port 0 picks a
	// free port (see Node.LocalAddr). Empty: no listener.
	Listen string
	// Seeds are peers to join at start ("seeds"). Joining any one member
	// of a cluster is enough.
	Seeds []string
	// Secret is the shared cluster secret ("secret"), required with Listen
	// or Seeds. It never crosses the wire.
	Secret string
	// FlushInterval is how often changed counts are sent to peers
	// ("flush_interval_ms"). Zero: the library default (100ms). Must be a
	// whole number of milliseconds.
	FlushInterval time.Duration
	// DownAfter is how long a silent peer is still considered up
	// ("down_after_ms"). Zero: the library default (1s). Must be a whole
	// number of milliseconds.
	DownAfter time.Duration
	// Options sets any other configuration key to a value.
	Options map[string]string
}

// CountInfo is a topic's cluster-wide count with how fresh and how
// complete it is.
type CountInfo struct {
	// Count is the local count plus the last count reported by each live
	// peer.
	Count uint64
	// Local is this node's exact count.
	Local uint64
	// PeersReporting is the number of live peers that have reported the
	// topic.
	PeersReporting int
	// PeersKnown is the number of peers currently known (up, or down but
	// within their grace period).
	PeersKnown int
	// OldestReportAge is the age of the oldest peer report summed into
	// Count (millisecond resolution); zero when no peer reported.
	OldestReportAge time.Duration
}

// Node is a running headcount node. It is safe for concurrent use by many
// goroutines. Close it when done; a node that becomes unreachable without
// being closed is closed by a finalizer, but only when the garbage
// collector gets to it.
type Node struct {
	// mu guards ptr: every call holds it for reading while it uses ptr, and
	// Close holds it for writing while it frees ptr, so a Close racing other
	// calls waits for them and never frees the node under them.
	mu  sync.RWMutex
	ptr *C.hc_node
	// serial identifies the node to the tests' finalizer hook.
	serial uint64
}

// finalizeHook, when set (only tests set it), is called with the serial
// number of every node the finalizer frees. (Serial numbers, not C
// addresses: the allocator reuses an address as soon as hc_node_free has
// released it.)
var finalizeHook atomic.Pointer[func(serial uint64)]

// serials numbers nodes in the order they start.
var serials atomic.Uint64

// statsBufSize is the first buffer size StatsJSON tries (a variable so
// tests can force the grow-and-retry path).
var statsBufSize = 4096

var errClosed = &Error{Status: StatusClosed, Message: "the node is closed"}

// Start validates cfg and starts a node (hc_node_start). Errors: ErrConfig
// for unknown keys or bad values, ErrIO when the listen address cannot be
// bound.
func Start(cfg Config) (*Node, error) {
	c := C.hc_config_new()
	if c == nil {
		return nil, &Error{Status: StatusPanic, Message: "hc_config_new returned NULL"}
	}
	defer C.hc_config_free(c)

	set := func(key, value string) error {
		if strings.IndexByte(key, 0) >= 0 || strings.IndexByte(value, 0) >= 0 {
			return &Error{Status: StatusConfig, Message: fmt.Sprintf("config key %q: key and value must not contain NUL bytes", key)}
		}
		ck, cv := C.CString(key), C.CString(value)
		defer C.free(unsafe.Pointer(ck))
		defer C.free(unsafe.Pointer(cv))
		r := C.hcgo_config_set(c, ck, cv)
		return newError(r.status, r.err)
	}
	millis := func(key string, d time.Duration) error {
		if d < time.Millisecond || d%time.Millisecond != 0 {
			return &Error{Status: StatusConfig, Message: fmt.Sprintf("config key %q: %v is not a positive whole number of milliseconds", key, d)}
		}
		return set(key, strconv.FormatInt(d.Milliseconds(), 10))
	}

	if cfg.NodeName != "" {
		if err := set("node_name", cfg.NodeName); err != nil {
			return nil, err
		}
	}
	if cfg.Listen != "" {
		if err := set("listen", cfg.Listen); err != nil {
			return nil, err
		}
	}
	if len(cfg.Seeds) > 0 {
		for _, s := range cfg.Seeds {
			if s == "" || strings.ContainsRune(s, ',') {
				return nil, &Error{Status: StatusConfig, Message: fmt.Sprintf("config key \"seeds\": bad seed address %q", s)}
			}
		}
		if err := set("seeds", strings.Join(cfg.Seeds, ",")); err != nil {
			return nil, err
		}
	}
	if cfg.Secret != "" {
		if err := set("secret", cfg.Secret); err != nil {
			return nil, err
		}
	}
	if cfg.FlushInterval != 0 {
		if err := millis("flush_interval_ms", cfg.FlushInterval); err != nil {
			return nil, err
		}
	}
	if cfg.DownAfter != 0 {
		if err := millis("down_after_ms", cfg.DownAfter); err != nil {
			return nil, err
		}
	}
	keys := make([]string, 0, len(cfg.Options))
	for k := range cfg.Options {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if err := set(k, cfg.Options[k]); err != nil {
			return nil, err
		}
	}

	r := C.hcgo_node_start(c)
	if err := newError(r.status, r.err); err != nil {
		return nil, err
	}
	if r.node == nil {
		return nil, &Error{Status: StatusNullArg, Message: "hc_node_start returned OK without a node"}
	}
	n := &Node{ptr: r.node, serial: serials.Add(1)}
	runtime.SetFinalizer(n, func(n *Node) {
		if n.free() {
			if hook := finalizeHook.Load(); hook != nil {
				(*hook)(n.serial)
			}
		}
	})
	return n, nil
}

// free frees the C node once; it reports whether this call freed it.
func (n *Node) free() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.ptr == nil {
		return false
	}
	C.hc_node_free(n.ptr) // graceful leave: says BYE to peers, joins threads
	n.ptr = nil
	return true
}

// Close leaves the cluster gracefully (peers drop this node's counts at
// once) and frees the node, waiting for calls in progress to finish. It is
// idempotent and always returns nil; later calls on the node return
// ErrClosed.
func (n *Node) Close() error {
	if n.free() {
		runtime.SetFinalizer(n, nil)
	}
	return nil
}

// acquire read-locks the node and returns its pointer, or errClosed. The
// caller must call n.mu.RUnlock() when it is done with the pointer.
func (n *Node) acquire() (*C.hc_node, error) {
	n.mu.RLock()
	if n.ptr == nil {
		n.mu.RUnlock()
		return nil, errClosed
	}
	return n.ptr, nil
}

// topicArgs returns a pointer to topic's bytes and their length. The
// pointer is nil for an empty topic (the C shim substitutes a non-NULL one,
// so the library reports ErrInvalidTopic). Callers keep topic alive across
// the C call with runtime.KeepAlive.
func topicArgs(topic string) (*C.uint8_t, C.size_t) {
	if len(topic) == 0 {
		return nil, 0
	}
	// The first word of a string header is the data pointer (Go 1.19 has
	// no unsafe.StringData). The bytes are only read by C.
	return (*C.uint8_t)(*(*unsafe.Pointer)(unsafe.Pointer(&topic))), C.size_t(len(topic))
}

// Track adds connection conn to topic. It reports whether the pair was
// new; tracking a pair twice counts it once.
func (n *Node) Track(topic string, conn uint64) (bool, error) {
	p, err := n.acquire()
	if err != nil {
		return false, err
	}
	defer n.mu.RUnlock()
	t, l := topicArgs(topic)
	r := C.hcgo_track(p, t, l, C.uint64_t(conn))
	runtime.KeepAlive(topic)
	return r.value != 0, newError(r.status, r.err)
}

// Untrack removes connection conn from topic. It reports whether the pair
// was tracked; untracking an untracked pair changes nothing.
func (n *Node) Untrack(topic string, conn uint64) (bool, error) {
	p, err := n.acquire()
	if err != nil {
		return false, err
	}
	defer n.mu.RUnlock()
	t, l := topicArgs(topic)
	r := C.hcgo_untrack(p, t, l, C.uint64_t(conn))
	runtime.KeepAlive(topic)
	return r.value != 0, newError(r.status, r.err)
}

// UntrackAll removes connection conn from every topic it is in (the
// connection went away) and returns how many topics that was.
func (n *Node) UntrackAll(conn uint64) (int, error) {
	p, err := n.acquire()
	if err != nil {
		return 0, err
	}
	defer n.mu.RUnlock()
	r := C.hcgo_untrack_all(p, C.uint64_t(conn))
	return int(r.value), newError(r.status, r.err)
}

// Add changes topic's local count by delta without membership tracking,
// for callers that keep membership themselves. Do not mix it with
// Track/Untrack on the same topic.
func (n *Node) Add(topic string, delta int64) error {
	p, err := n.acquire()
	if err != nil {
		return err
	}
	defer n.mu.RUnlock()
	t, l := topicArgs(topic)
	r := C.hcgo_add(p, t, l, C.int64_t(delta))
	runtime.KeepAlive(topic)
	return newError(r.status, r.err)
}

// Count returns topic's cluster-wide count: the exact local count plus the
// last count reported by each live peer.
func (n *Node) Count(topic string) (uint64, error) {
	p, err := n.acquire()
	if err != nil {
		return 0, err
	}
	defer n.mu.RUnlock()
	t, l := topicArgs(topic)
	r := C.hcgo_count(p, t, l)
	runtime.KeepAlive(topic)
	if err := newError(r.status, r.err); err != nil {
		return 0, err
	}
	return uint64(r.value), nil
}

// CountLocal returns this node's exact count of topic.
func (n *Node) CountLocal(topic string) (uint64, error) {
	p, err := n.acquire()
	if err != nil {
		return 0, err
	}
	defer n.mu.RUnlock()
	t, l := topicArgs(topic)
	r := C.hcgo_count_local(p, t, l)
	runtime.KeepAlive(topic)
	if err := newError(r.status, r.err); err != nil {
		return 0, err
	}
	return uint64(r.value), nil
}

// CountInfo returns topic's cluster-wide count with its freshness and
// coverage.
func (n *Node) CountInfo(topic string) (CountInfo, error) {
	p, err := n.acquire()
	if err != nil {
		return CountInfo{}, err
	}
	defer n.mu.RUnlock()
	t, l := topicArgs(topic)
	r := C.hcgo_count_info(p, t, l)
	runtime.KeepAlive(topic)
	if err := newError(r.status, r.err); err != nil {
		return CountInfo{}, err
	}
	return CountInfo{
		Count:           uint64(r.info.count),
		Local:           uint64(r.info.local),
		PeersReporting:  int(r.info.peers_reporting),
		PeersKnown:      int(r.info.peers_known),
		OldestReportAge: time.Duration(r.info.oldest_report_age_ms) * time.Millisecond,
	}, nil
}

// Total returns the sum of all counts of all topics across the cluster.
func (n *Node) Total() (uint64, error) {
	p, err := n.acquire()
	if err != nil {
		return 0, err
	}
	defer n.mu.RUnlock()
	r := C.hcgo_total(p)
	if err := newError(r.status, r.err); err != nil {
		return 0, err
	}
	return uint64(r.value), nil
}

// LocalAddr returns the address the node listens on ("127.0.0.1:7401"),
// with the actual port when Listen asked for port 0. It returns "" when the
// node does not listen or is closed.
func (n *Node) LocalAddr() string {
	p, err := n.acquire()
	if err != nil {
		return ""
	}
	defer n.mu.RUnlock()
	s, err := readString(64, func(buf *C.char, cap C.size_t) C.hcgo_result {
		return C.hcgo_local_addr(p, buf, cap)
	})
	if err != nil {
		return ""
	}
	return s
}

// AddPeer connects to another node at addr (host:port). Errors:
// ErrInvalidArg for an address the library rejects, and whatever the
// library reports for a node that cannot have peers (a local-only node).
func (n *Node) AddPeer(addr string) error {
	if strings.IndexByte(addr, 0) >= 0 {
		return &Error{Status: StatusInvalidArg, Message: fmt.Sprintf("peer address %q contains a NUL byte", addr)}
	}
	p, err := n.acquire()
	if err != nil {
		return err
	}
	defer n.mu.RUnlock()
	ca := C.CString(addr)
	defer C.free(unsafe.Pointer(ca))
	r := C.hcgo_add_peer(p, ca)
	return newError(r.status, r.err)
}

// StatsJSON returns the node's counters and state (peers, flushes, bytes
// in and out, ...) as one JSON object.
func (n *Node) StatsJSON() (string, error) {
	p, err := n.acquire()
	if err != nil {
		return "", err
	}
	defer n.mu.RUnlock()
	return readString(statsBufSize, func(buf *C.char, cap C.size_t) C.hcgo_result {
		return C.hcgo_stats_json(p, buf, cap)
	})
}

// readString calls a C function that writes a NUL-terminated string into a
// buffer, growing the buffer while the function answers
// HC_ERR_BUFFER_TOO_SMALL with the length it needs (which may grow between
// tries: stats change).
func readString(size int, call func(buf *C.char, cap C.size_t) C.hcgo_result) (string, error) {
	if size < 1 {
		size = 1
	}
	for tries := 0; ; tries++ {
		buf := make([]byte, size)
		r := call((*C.char)(unsafe.Pointer(&buf[0])), C.size_t(len(buf)))
		err := newError(r.status, r.err)
		if err == nil {
			if uint64(r.value) >= uint64(len(buf)) {
				return "", &Error{Status: StatusBufferTooSmall, Message: fmt.Sprintf("library reported length %d for a %d-byte buffer", uint64(r.value), len(buf))}
			}
			return string(buf[:r.value]), nil
		}
		if Status(r.status) != StatusBufferTooSmall || tries >= 8 {
			return "", err
		}
		need := int(r.value) + 1
		if need <= size {
			need = size * 2
		}
		size = need
	}
}

// Version returns the library's version (hc_version).
func Version() string {
	return C.GoString(C.hc_version())
}
