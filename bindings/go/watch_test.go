package headcount

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/rand"
	"runtime/pprof"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

// seen is the last value a watch delivered per topic.
type seen map[string]uint64

// fold adds a batch to s, failing on a batch that names a topic twice, is
// empty, or has Users != Count (the library does not count distinct users
// yet).
func (s seen) fold(t *testing.T, batch []Change) {
	t.Helper()
	if len(batch) == 0 {
		t.Fatal("an empty batch was delivered")
	}
	names := map[string]bool{}
	for _, c := range batch {
		if names[c.Topic] {
			t.Fatalf("batch names %q twice: %v", c.Topic, batch)
		}
		names[c.Topic] = true
		if c.Users != c.Count {
			t.Fatalf("change %+v: users != count", c)
		}
		s[c.Topic] = c.Count
	}
}

// readUntil folds batches from w into s until cond(s) holds (30 s at most).
func readUntil(t *testing.T, w *Watch, s seen, what string, cond func(seen) bool) {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for !cond(s) {
		select {
		case batch, ok := <-w.C:
			if !ok {
				t.Fatalf("%s: C closed early; seen %v", what, s)
			}
			s.fold(t, batch)
		case <-deadline:
			t.Fatalf("%s: not within 30s; seen %v", what, s)
		}
	}
}

func has(topic string, want uint64) func(seen) bool {
	return func(s seen) bool { v, ok := s[topic]; return ok && v == want }
}

// quiet checks that w delivers nothing for d.
func quiet(t *testing.T, w *Watch, d time.Duration) {
	t.Helper()
	select {
	case batch := <-w.C:
		t.Fatalf("unexpected batch %v", batch)
	case <-time.After(d):
	}
}

func watchesStat(t *testing.T, n *Node) int {
	t.Helper()
	var s struct{ Watches int }
	if err := json.Unmarshal([]byte(must(n.StatsJSON())), &s); err != nil {
		t.Fatal(err)
	}
	return s.Watches
}

func fastNode(t *testing.T) *Node {
	return start(t, Config{NodeName: "w", FlushInterval: 20 * time.Millisecond})
}

func TestWatchInitial(t *testing.T) {
	n := fastNode(t)
	flushed := must(n.Watch("", 0)) // tells when the tracks below were flushed
	defer flushed.Close()
	for i, topic := range []string{"a:1", "a:1", "a:2", "b"} {
		must(n.Track(topic, uint64(i)))
	}
	must(n.Track("a:3", 9))
	must(n.Untrack("a:3", 9)) // at zero: not in the initial batch
	readUntil(t, flushed, seen{}, "flush", func(s seen) bool { return has("a:2", 1)(s) && has("b", 1)(s) })
	w := must(n.Watch("a:", WatchInitial))
	defer w.Close()
	s := seen{}
	select {
	case batch := <-w.C:
		s.fold(t, batch)
	case <-time.After(30 * time.Second):
		t.Fatal("no initial batch")
	}
	if want := (seen{"a:1": 2, "a:2": 1}); fmt.Sprint(s) != fmt.Sprint(want) {
		t.Fatalf("initial batch %v, want %v", s, want)
	}

	// Without the flag nothing comes until something changes (the tracks
	// above were flushed before this watch started).
	w0 := must(n.Watch("a:", 0))
	defer w0.Close()
	quiet(t, w0, 100*time.Millisecond)
}

func TestWatchPrefixAndFinalZero(t *testing.T) {
	n := fastNode(t)
	rooms := must(n.Watch("room:", 0))
	defer rooms.Close()
	all := must(n.Watch("", 0))
	defer all.Close()
	must(n.Track("room:1", 1))
	must(n.Track("room:1", 2))
	must(n.Track("lobby", 1))
	r, a := seen{}, seen{}
	readUntil(t, rooms, r, "rooms", has("room:1", 2))
	readUntil(t, all, a, "all", func(s seen) bool { return has("lobby", 1)(s) && has("room:1", 2)(s) })
	must(n.UntrackAll(1))
	must(n.UntrackAll(2))
	readUntil(t, rooms, r, "rooms after leaving", has("room:1", 0))
	readUntil(t, all, a, "all after leaving", func(s seen) bool { return has("lobby", 0)(s) && has("room:1", 0)(s) })
	if _, ok := r["lobby"]; ok {
		t.Fatalf("the room: watch saw lobby: %v", r)
	}
}

func TestWatchCloseClosesC(t *testing.T) {
	n := fastNode(t)
	base := watchesStat(t, n)
	w := must(n.Watch("", 0))
	if got := watchesStat(t, n); got != base+1 {
		t.Fatalf("watches = %d with one open, want %d", got, base+1)
	}
	must(n.Track("x", 1))
	// Close while the goroutine holds a batch nobody receives.
	time.Sleep(100 * time.Millisecond)
	start := time.Now()
	w.Close()
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("Close took %v", d)
	}
	for range w.C { // closed: drains what was buffered (nothing) and ends
	}
	w.Close() // idempotent
	if got := watchesStat(t, n); got != base {
		t.Fatalf("watches = %d after Close, want %d (the library's watch was not freed)", got, base)
	}

	// Close racing receivers and other Closes.
	for round := 0; round < 20; round++ {
		w := must(n.Watch("", WatchInitial))
		var wg sync.WaitGroup
		for g := 0; g < 3; g++ {
			wg.Add(2)
			go func() {
				defer wg.Done()
				for range w.C {
				}
			}()
			go func() {
				defer wg.Done()
				w.Close()
			}()
		}
		must(n.Track(fmt.Sprintf("r%d", round), 2))
		wg.Wait()
	}
	if got := watchesStat(t, n); got != base {
		t.Fatalf("watches = %d after the races, want %d", got, base)
	}
}

func TestWatchEndsWithItsNode(t *testing.T) {
	n := fastNode(t)
	w := must(n.Watch("", 0))
	must(n.Track("t", 1))
	readUntil(t, w, seen{}, "before close", has("t", 1))
	n.Close()
	select {
	case _, ok := <-w.C:
		for ok { // a last batch may come first
			_, ok = <-w.C
		}
	case <-time.After(30 * time.Second):
		t.Fatal("C not closed after the node closed")
	}
	w.Close() // after the node: fine
	if _, err := n.Watch("", 0); !errors.Is(err, ErrClosed) {
		t.Fatalf("Watch on a closed node: %v, want ErrClosed", err)
	}
	if _, err := n.Top(1, ""); !errors.Is(err, ErrClosed) {
		t.Fatalf("Top on a closed node: %v, want ErrClosed", err)
	}
}

func TestWatchAndTopArgumentErrors(t *testing.T) {
	n := fastNode(t)
	long := strings.Repeat("p", 1025) // over the default max_topic_len
	if _, err := n.Watch(long, 0); !errors.Is(err, ErrInvalidTopic) {
		t.Fatalf("Watch(long prefix): %v, want ErrInvalidTopic", err)
	}
	if _, err := n.Watch("", 2); !errors.Is(err, ErrInvalidArg) {
		t.Fatalf("Watch(flag 2): %v, want ErrInvalidArg", err)
	}
	if _, err := n.Top(1, long); !errors.Is(err, ErrInvalidTopic) {
		t.Fatalf("Top(long prefix): %v, want ErrInvalidTopic", err)
	}
	if _, err := n.Top(-1, ""); !errors.Is(err, ErrInvalidArg) {
		t.Fatalf("Top(-1): %v, want ErrInvalidArg", err)
	}
	if got := must(n.Top(0, "")); len(got) != 0 {
		t.Fatalf("Top(0) = %v", got)
	}
}

// bruteTop is Top computed from Count over every topic.
func bruteTop(t *testing.T, n *Node, topics []string, k int, prefix string) []TopicCount {
	var all []TopicCount
	for _, topic := range topics {
		if c := must(n.Count(topic)); c > 0 && strings.HasPrefix(topic, prefix) {
			all = append(all, TopicCount{topic, c})
		}
	}
	sort.Slice(all, func(i, j int) bool {
		if all[i].Count != all[j].Count {
			return all[i].Count > all[j].Count
		}
		return all[i].Topic < all[j].Topic
	})
	if len(all) > k {
		all = all[:k]
	}
	return all
}

func TestTopAgainstBruteForce(t *testing.T) {
	n := fastNode(t)
	rng := rand.New(rand.NewSource(14))
	var topics []string
	for i := 0; i < 300; i++ {
		topics = append(topics, fmt.Sprintf("%s:%d", []string{"room", "lobby", "ro"}[i%3], i))
	}
	for conn := uint64(0); conn < 3000; conn++ {
		must(n.Track(topics[rng.Intn(len(topics))], conn%97)) // many ties
	}
	for conn := uint64(0); conn < 20; conn++ {
		must(n.UntrackAll(conn)) // some topics back at zero
	}
	for _, k := range []int{1, 10, 50, 1000} {
		for _, prefix := range []string{"", "room:", "ro", "nothing"} {
			got := must(n.Top(k, prefix))
			want := bruteTop(t, n, topics, k, prefix)
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("Top(%d, %q) =\n%v\nwant\n%v", k, prefix, got, want)
			}
		}
	}
}

// A watch on one node sees another node's tracks, and their end when that
// node leaves; Top counts the whole cluster.
func TestWatchTwoNodeCluster(t *testing.T) {
	a := startClustered(t, "a")
	b := startClustered(t, "b", a.LocalAddr())
	w := must(a.Watch("room:", WatchInitial))
	defer w.Close()
	must(a.Track("room:1", 1))
	for conn := uint64(0); conn < 3; conn++ {
		must(b.Track("room:1", conn))
		must(b.Track("room:2", conn))
	}
	must(b.Track("other", 1))
	s := seen{}
	readUntil(t, w, s, "a's watch", func(s seen) bool { return has("room:1", 4)(s) && has("room:2", 3)(s) })
	if got, want := fmt.Sprint(must(a.Top(10, "room:"))), "[{room:1 4} {room:2 3}]"; got != want {
		t.Fatalf("a.Top = %s, want %s", got, want)
	}
	b.Close() // graceful leave: a drops b's counts at once
	readUntil(t, w, s, "after b left", func(s seen) bool { return has("room:1", 1)(s) && has("room:2", 0)(s) })
	if _, ok := s["other"]; ok {
		t.Fatalf("the room: watch saw other: %v", s)
	}
}

// Waiting watches wait in Go's poller, not in a cgo call each holding an
// OS thread (Go stops a program at 10,000 threads), and Close wakes them
// at once.
func TestIdleWatchesHoldNoThreads(t *testing.T) {
	n := fastNode(t)
	threads := pprof.Lookup("threadcreate")
	before := threads.Count()
	ws := make([]*Watch, 300)
	for i := range ws {
		ws[i] = must(n.Watch(fmt.Sprintf("idle:%d", i), 0))
	}
	time.Sleep(300 * time.Millisecond) // every goroutine is waiting by now
	if grew := threads.Count() - before; grew > 30 {
		t.Fatalf("%d OS threads created for 300 idle watches", grew)
	}
	must(n.Track("idle:7", 1)) // one of them still delivers
	readUntil(t, ws[7], seen{}, "idle:7", has("idle:7", 1))
	start := time.Now()
	for _, w := range ws {
		w.Close()
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("closing 300 watches took %v", d)
	}
}

// A consumer that does not read while topics churn: the library holds at
// most one pending entry per topic (watch_backlog), the goroutine one
// batch, and once it reads, the last values are the counts.
func TestWatchSlowConsumer(t *testing.T) {
	const topics = 20_000
	n := fastNode(t)
	w := must(n.Watch("s:", 0))
	defer w.Close()
	for round := 0; round < 5; round++ {
		for i := 0; i < topics; i++ {
			if err := n.Add(fmt.Sprintf("s:%d", i), 1); err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(60 * time.Millisecond) // a few flushes while nobody reads
	}
	var st struct {
		WatchBacklog int `json:"watch_backlog"`
	}
	if err := json.Unmarshal([]byte(must(n.StatsJSON())), &st); err != nil {
		t.Fatal(err)
	}
	if st.WatchBacklog > topics {
		t.Fatalf("watch_backlog = %d with %d topics", st.WatchBacklog, topics)
	}
	s := seen{}
	readUntil(t, w, s, "slow consumer", func(s seen) bool {
		if len(s) != topics {
			return false
		}
		for _, c := range s {
			if c != 5 {
				return false
			}
		}
		return true
	})
}

// The fallback for a library fd that is not non-blocking: the goroutine
// waits in the library 50ms at a time; delivery and Close work the same.
func TestWatchWaitingInTheLibrary(t *testing.T) {
	waitInLibrary = true
	defer func() { waitInLibrary = false }()
	n := fastNode(t)
	w := must(n.Watch("", 0))
	if w.fd != nil {
		t.Fatal("the watch waits in the poller")
	}
	must(n.Track("t", 1))
	readUntil(t, w, seen{}, "fallback", has("t", 1))
	start := time.Now()
	w.Close()
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("Close took %v", d)
	}
	if _, ok := <-w.C; ok {
		t.Fatal("C not closed")
	}
	w2 := must(n.Watch("", 0))
	n.Close()
	for range w2.C { // closed after the node
	}
	w2.Close()
}
