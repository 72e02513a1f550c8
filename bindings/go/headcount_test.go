package headcount

import (
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// start starts a node and closes it when the test ends.
func start(t *testing.T, cfg Config) *Node {
	t.Helper()
	n, err := Start(cfg)
	if err != nil {
		t.Fatalf("Start(%+v): %v", cfg, err)
	}
	t.Cleanup(func() { n.Close() })
	return n
}

// must returns v, or panics (failing the test with a stack trace) when err
// is not nil. Go cannot pass a *testing.T beside a multi-value call, hence
// the panic; never call it off the test goroutine.
func must[T any](v T, err error) T {
	if err != nil {
		panic(fmt.Sprintf("unexpected error: %v", err))
	}
	return v
}

func wantCount(t *testing.T, n *Node, topic string, want uint64) {
	t.Helper()
	if c := must(n.Count(topic)); c != want {
		t.Errorf("Count(%q) = %d, want %d", topic, c, want)
	}
	if c := must(n.CountLocal(topic)); c != want {
		t.Errorf("CountLocal(%q) = %d, want %d", topic, c, want)
	}
}

// wantErr checks that err is an *Error matching sentinel, with a message.
func wantErr(t *testing.T, what string, err, sentinel error) {
	t.Helper()
	if !errors.Is(err, sentinel) {
		t.Errorf("%s: error %v, want %v", what, err, sentinel)
		return
	}
	var e *Error
	if !errors.As(err, &e) || e.Message == "" {
		t.Errorf("%s: error %#v has no message", what, err)
	}
}

func TestVersion(t *testing.T) {
	if v := Version(); v == "" || strings.ContainsAny(v, "\x00\n") {
		t.Fatalf("Version() = %q", v)
	}
}

func TestStatusAndSentinels(t *testing.T) {
	sentinels := []error{ErrNullArg, ErrInvalidArg, ErrInvalidTopic, ErrConfig, ErrIO,
		ErrBufferTooSmall, ErrClosed, ErrPanic}
	seen := map[Status]bool{StatusOK: true}
	names := map[string]bool{StatusOK.String(): true}
	for _, s := range sentinels {
		e := s.(*Error)
		if seen[e.Status] {
			t.Errorf("status %d used by two sentinels (or is OK)", e.Status)
		}
		seen[e.Status] = true
		name := e.Status.String()
		if name == "" || names[name] {
			t.Errorf("status %d: hc_status_str %q is empty or not unique", e.Status, name)
		}
		names[name] = true
		if s.Error() != "headcount: "+name {
			t.Errorf("sentinel Error() = %q", s.Error())
		}
		// A library error with a message matches its sentinel, also wrapped,
		// and no other sentinel.
		got := fmt.Errorf("context: %w", &Error{Status: e.Status, Message: "m"})
		for _, other := range sentinels {
			if errors.Is(got, other) != (other == s) {
				t.Errorf("errors.Is(%v, %v) = %v", got, other, !(other == s))
			}
		}
	}
	a := &Error{Status: StatusConfig, Message: "x"}
	if !errors.Is(a, &Error{Status: StatusConfig, Message: "x"}) ||
		errors.Is(a, &Error{Status: StatusConfig, Message: "y"}) ||
		errors.Is(a, errors.New("headcount: x")) {
		t.Error("Error.Is compares status and, when the target has one, message")
	}
	if a.Error() != "headcount: x" {
		t.Errorf("Error() = %q", a.Error())
	}
}

func TestTrackUntrack(t *testing.T) {
	n := start(t, Config{NodeName: "t"})
	if !must(n.Track("room:1", 1)) {
		t.Error("first Track reported not added")
	}
	if must(n.Track("room:1", 1)) {
		t.Error("second Track of the same pair reported added")
	}
	must(n.Track("room:1", 2))
	wantCount(t, n, "room:1", 2)
	wantCount(t, n, "room:2", 0)

	if !must(n.Untrack("room:1", 1)) {
		t.Error("Untrack of a tracked pair reported not removed")
	}
	if must(n.Untrack("room:1", 1)) {
		t.Error("second Untrack reported removed")
	}
	if must(n.Untrack("room:1", 99)) || must(n.Untrack("never", 1)) {
		t.Error("Untrack of an untracked pair reported removed")
	}
	wantCount(t, n, "room:1", 1)

	// Topics are bytes: NUL bytes and invalid UTF-8 are fine and distinct.
	for _, topic := range []string{"a\x00b", "a", "\xff\xfe", "a\x00"} {
		if !must(n.Track(topic, 5)) {
			t.Errorf("Track(%q) not added", topic)
		}
		wantCount(t, n, topic, 1)
	}
}

func TestUntrackAll(t *testing.T) {
	n := start(t, Config{})
	for _, topic := range []string{"x", "y", "z"} {
		must(n.Track(topic, 7))
		must(n.Track(topic, 8))
	}
	if k := must(n.UntrackAll(7)); k != 3 {
		t.Errorf("UntrackAll = %d, want 3", k)
	}
	if k := must(n.UntrackAll(7)); k != 0 {
		t.Errorf("second UntrackAll = %d, want 0", k)
	}
	if k := must(n.UntrackAll(12345)); k != 0 {
		t.Errorf("UntrackAll of an unknown connection = %d, want 0", k)
	}
	for _, topic := range []string{"x", "y", "z"} {
		wantCount(t, n, topic, 1)
	}
}

func TestAddAndTotal(t *testing.T) {
	n := start(t, Config{})
	if err := n.Add("raw", 5); err != nil {
		t.Fatal(err)
	}
	if err := n.Add("raw", -2); err != nil {
		t.Fatal(err)
	}
	wantCount(t, n, "raw", 3)
	must(n.Track("tracked", 1))
	must(n.Track("tracked", 2))
	if tot := must(n.Total()); tot != 5 {
		t.Errorf("Total = %d, want 5", tot)
	}
}

func TestCountInfoLocal(t *testing.T) {
	n := start(t, Config{})
	must(n.Track("room", 1))
	must(n.Track("room", 2))
	info := must(n.CountInfo("room"))
	want := CountInfo{Count: 2, Local: 2}
	if info != want {
		t.Errorf("CountInfo = %+v, want %+v", info, want)
	}
	if info := must(n.CountInfo("unknown")); info != (CountInfo{}) {
		t.Errorf("CountInfo(unknown) = %+v", info)
	}
}

func TestInvalidTopic(t *testing.T) {
	n := start(t, Config{Options: map[string]string{"max_topic_len": "8"}})
	for _, topic := range []string{"", "123456789", strings.Repeat("x", 5000)} {
		_, err := n.Track(topic, 1)
		wantErr(t, fmt.Sprintf("Track(%d bytes)", len(topic)), err, ErrInvalidTopic)
		_, err = n.Untrack(topic, 1)
		wantErr(t, "Untrack", err, ErrInvalidTopic)
		wantErr(t, "Add", n.Add(topic, 1), ErrInvalidTopic)
		_, err = n.Count(topic)
		wantErr(t, "Count", err, ErrInvalidTopic)
		_, err = n.CountLocal(topic)
		wantErr(t, "CountLocal", err, ErrInvalidTopic)
		_, err = n.CountInfo(topic)
		wantErr(t, "CountInfo", err, ErrInvalidTopic)
	}
	_, err := n.Track("123456789", 1)
	if !strings.Contains(err.Error(), "8") {
		t.Errorf("oversize topic message does not name the limit: %v", err)
	}
	if !must(n.Track("12345678", 1)) {
		t.Error("a topic of exactly max_topic_len bytes was not added")
	}
	if tot := must(n.Total()); tot != 1 {
		t.Errorf("failed calls changed counts: Total = %d", tot)
	}

	// The default limit is 1024 bytes.
	d := start(t, Config{})
	must(d.Track(strings.Repeat("a", 1024), 1))
	_, err = d.Track(strings.Repeat("a", 1025), 1)
	wantErr(t, "Track(1025 bytes)", err, ErrInvalidTopic)
}

func TestConfigErrors(t *testing.T) {
	cases := []struct {
		name string
		cfg  Config
		want string // a substring of the message
	}{
		{"unknown key", Config{Options: map[string]string{"colour": "blue"}}, "colour"},
		{"bad value", Config{Options: map[string]string{"flush_interval_ms": "soon"}}, "flush_interval_ms"},
		{"out of range", Config{Options: map[string]string{"max_topic_len": "0"}}, "max_topic_len"},
		{"sub-millisecond interval", Config{FlushInterval: 1500 * time.Microsecond}, "flush_interval_ms"},
		{"negative interval", Config{DownAfter: -time.Second}, "down_after_ms"},
		{"interval too long", Config{FlushInterval: 2 * time.Hour}, "flush_interval_ms"},
		{"listen without secret", Config{Listen: "127.0.0.1:0"}, "secret"},
		{"seeds without secret", Config{Seeds: []string{"127.0.0.1:1"}}, "secret"},
		{"bad listen address", Config{Listen: "no port", Secret: "s"}, "listen"},
		{"empty seed", Config{Seeds: []string{""}, Secret: "s"}, "seeds"},
		{"comma in a seed", Config{Seeds: []string{"a:1,b:2"}, Secret: "s"}, "seeds"},
		{"NUL in a value", Config{NodeName: "a\x00b"}, "node_name"},
		{"NUL in a key", Config{Options: map[string]string{"node\x00name": "a"}}, "NUL"},
	}
	for _, c := range cases {
		n, err := Start(c.cfg)
		if err == nil {
			n.Close()
			t.Errorf("%s: Start succeeded", c.name)
			continue
		}
		wantErr(t, c.name, err, ErrConfig)
		if !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: message %q does not mention %q", c.name, err, c.want)
		}
	}
}

func TestOptionsOverrideFields(t *testing.T) {
	n := start(t, Config{NodeName: "field", Options: map[string]string{"node_name": "option", "gc_after_ms": "0"}})
	js := must(n.StatsJSON())
	var stats map[string]interface{}
	if err := json.Unmarshal([]byte(js), &stats); err != nil {
		t.Fatalf("StatsJSON is not JSON: %v\n%s", err, js)
	}
	if stats["node"] != "option" {
		t.Errorf("stats node = %v, want the option's value", stats["node"])
	}
}

func TestStatsJSON(t *testing.T) {
	n := start(t, Config{NodeName: "stats-node"})
	must(n.Track("a", 1))
	must(n.Track("b", 1))
	check := func(js string) {
		t.Helper()
		var stats map[string]interface{}
		if err := json.Unmarshal([]byte(js), &stats); err != nil {
			t.Fatalf("StatsJSON is not JSON: %v\n%q", err, js)
		}
		if stats["node"] != "stats-node" {
			t.Errorf("stats node = %v", stats["node"])
		}
		if stats["tracked_pairs"] != float64(2) {
			t.Errorf("stats tracked_pairs = %v, want 2\n%s", stats["tracked_pairs"], js)
		}
	}
	check(must(n.StatsJSON()))

	// Force the HC_ERR_BUFFER_TOO_SMALL path: a 1-byte first buffer.
	old := statsBufSize
	statsBufSize = 1
	defer func() { statsBufSize = old }()
	check(must(n.StatsJSON()))
}

func TestLocalOnlyNetworking(t *testing.T) {
	n := start(t, Config{})
	if a := n.LocalAddr(); a != "" {
		t.Errorf("LocalAddr of a node without a listener = %q, want \"\"", a)
	}
	err := n.AddPeer("127.0.0.1:1")
	var e *Error
	if !errors.As(err, &e) || e.Message == "" {
		t.Errorf("AddPeer on a local-only node: %v, want an *Error with a message", err)
	}
	wantErr(t, "AddPeer with a NUL", n.AddPeer("127.0.0.1:1\x00"), ErrInvalidArg)
}

func TestClosed(t *testing.T) {
	n, err := Start(Config{})
	if err != nil {
		t.Fatal(err)
	}
	must(n.Track("x", 1))
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ { // concurrent Close is fine
		wg.Add(1)
		go func() { defer wg.Done(); n.Close() }()
	}
	wg.Wait()
	if err := n.Close(); err != nil {
		t.Errorf("Close after Close: %v", err)
	}
	checkClosed(t, n)
}

func checkClosed(t *testing.T, n *Node) {
	t.Helper()
	_, err := n.Track("x", 1)
	wantErr(t, "Track", err, ErrClosed)
	_, err = n.Untrack("x", 1)
	wantErr(t, "Untrack", err, ErrClosed)
	_, err = n.UntrackAll(1)
	wantErr(t, "UntrackAll", err, ErrClosed)
	wantErr(t, "Add", n.Add("x", 1), ErrClosed)
	_, err = n.Count("x")
	wantErr(t, "Count", err, ErrClosed)
	_, err = n.CountLocal("x")
	wantErr(t, "CountLocal", err, ErrClosed)
	_, err = n.CountInfo("x")
	wantErr(t, "CountInfo", err, ErrClosed)
	_, err = n.Total()
	wantErr(t, "Total", err, ErrClosed)
	_, err = n.StatsJSON()
	wantErr(t, "StatsJSON", err, ErrClosed)
	wantErr(t, "AddPeer", n.AddPeer("127.0.0.1:1"), ErrClosed)
	if a := n.LocalAddr(); a != "" {
		t.Errorf("LocalAddr after Close = %q", a)
	}
	// An invalid topic on a closed node is still ErrClosed: the node is
	// checked first.
	_, err = n.Track("", 1)
	wantErr(t, "Track(\"\") after Close", err, ErrClosed)
}

// 16 goroutines track, re-track and untrack at once; the counts are exact.
func TestConcurrentTracking(t *testing.T) {
	n := start(t, Config{})
	const goroutines, perG, topics = 16, 2000, 10
	var wg sync.WaitGroup
	errs := make(chan error, goroutines)
	for g := 0; g < goroutines; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < perG; i++ {
				conn := uint64(g*perG + i)
				topic := fmt.Sprintf("room:%d", conn%topics)
				for _, tp := range []string{topic, "lobby", topic} { // the re-track must not count
					if _, err := n.Track(tp, conn); err != nil {
						errs <- err
						return
					}
				}
				if conn%4 == 0 { // a quarter leave the lobby again
					if ok, err := n.Untrack("lobby", conn); err != nil || !ok {
						errs <- fmt.Errorf("Untrack(lobby, %d) = %v, %v", conn, ok, err)
						return
					}
				}
				if conn%10 == 1 { // a tenth disconnect entirely
					if k, err := n.UntrackAll(conn); err != nil || k != 2 {
						errs <- fmt.Errorf("UntrackAll(%d) = %d, %v", conn, k, err)
						return
					}
				}
			}
		}(g)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	// Model: conn in room:(conn%10) unless conn%10==1; in lobby unless
	// conn%4==0 or conn%10==1.
	rooms := make([]uint64, topics)
	var lobby, total uint64
	for conn := 0; conn < goroutines*perG; conn++ {
		if conn%10 == 1 {
			continue
		}
		rooms[conn%topics]++
		total++
		if conn%4 != 0 {
			lobby++
			total++
		}
	}
	for i, want := range rooms {
		wantCount(t, n, fmt.Sprintf("room:%d", i), want)
	}
	wantCount(t, n, "lobby", lobby)
	if tot := must(n.Total()); tot != total {
		t.Errorf("Total = %d, want %d", tot, total)
	}
}

// Close racing calls from other goroutines: every call either succeeds or
// returns ErrClosed; nothing crashes or uses freed memory.
func TestCloseRacesCalls(t *testing.T) {
	for round := 0; round < 20; round++ {
		n, err := Start(Config{FlushInterval: time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		started := make(chan struct{})
		var startOnce sync.Once
		errs := make(chan error, 8)
		for g := 0; g < 8; g++ {
			wg.Add(1)
			go func(g int) {
				defer wg.Done()
				defer startOnce.Do(func() { close(started) })
				for i := 0; ; i++ {
					var err error
					topic := fmt.Sprintf("t%d", i%50)
					switch i % 6 {
					case 0:
						_, err = n.Track(topic, uint64(g))
					case 1:
						_, err = n.Count(topic)
					case 2:
						_, err = n.UntrackAll(uint64(g))
					case 3:
						_, err = n.StatsJSON()
					case 4:
						_, err = n.CountInfo(topic)
					case 5:
						err = n.Add(topic, 1)
					}
					if i == 100 {
						startOnce.Do(func() { close(started) })
					}
					if err != nil {
						if !errors.Is(err, ErrClosed) {
							errs <- err
						}
						return
					}
				}
			}(g)
		}
		<-started
		n.Close()
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatalf("a call racing Close failed with %v, want success or ErrClosed", err)
		}
		checkClosed(t, n)
	}
}

// watchFinalizer records the C nodes the finalizer frees while the test
// runs (nodes leaked by other tests may be freed meanwhile too).
func watchFinalizer(t *testing.T) func() map[uint64]int {
	var mu sync.Mutex
	freed := map[uint64]int{}
	hook := func(p uint64) {
		mu.Lock()
		freed[p]++
		mu.Unlock()
	}
	finalizeHook.Store(&hook)
	t.Cleanup(func() { finalizeHook.Store(nil) })
	return func() map[uint64]int {
		mu.Lock()
		defer mu.Unlock()
		c := make(map[uint64]int, len(freed))
		for p, k := range freed {
			c[p] = k
		}
		return c
	}
}

// Nodes never closed are freed by the finalizer, each exactly once.
func TestFinalizerFreesUnclosedNodes(t *testing.T) {
	freed := watchFinalizer(t)
	// The 16 nodes are unreachable once this function returns.
	leaked := func() []uint64 {
		nodes := make([]*Node, 16)
		serials := make([]uint64, len(nodes))
		for i := range nodes {
			n, err := Start(Config{NodeName: fmt.Sprintf("leak-%d", i)})
			if err != nil {
				t.Fatal(err)
			}
			must(n.Track("x", uint64(i)))
			nodes[i], serials[i] = n, n.serial
		}
		runtime.KeepAlive(nodes)
		return serials
	}()
	deadline := time.Now().Add(10 * time.Second)
	for {
		runtime.GC()
		time.Sleep(10 * time.Millisecond)
		f, missing := freed(), 0
		for _, p := range leaked {
			if f[p] > 1 {
				t.Fatalf("node %d freed %d times", p, f[p])
			}
			missing += 1 - f[p]
		}
		if missing == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the finalizer freed %d of %d unreachable nodes", len(leaked)-missing, len(leaked))
		}
	}
}

// Close clears the finalizer: a closed node, once collected, is not freed
// again.
func TestCloseClearsFinalizer(t *testing.T) {
	freed := watchFinalizer(t)
	closed := map[uint64]bool{}
	for i := 0; i < 8; i++ {
		n, err := Start(Config{})
		if err != nil {
			t.Fatal(err)
		}
		closed[n.serial] = true
		n.Close()
	}
	for i := 0; i < 5; i++ {
		runtime.GC()
		time.Sleep(5 * time.Millisecond)
	}
	for p := range freed() {
		if closed[p] {
			t.Fatalf("the finalizer freed node %d, which was closed", p)
		}
	}
}

// The garbage collector runs constantly while nodes that are only
// reachable during a call are used, with topics built on the heap. A node
// or topic freed under a C call would crash or miscount here.
func TestGCDuringCalls(t *testing.T) {
	stop := make(chan struct{})
	var gcWG sync.WaitGroup
	gcWG.Add(1)
	go func() {
		defer gcWG.Done()
		for {
			select {
			case <-stop:
				return
			default:
				runtime.GC()
			}
		}
	}()
	defer func() { close(stop); gcWG.Wait() }()

	startTracked := func(i int) *Node {
		n, err := Start(Config{})
		if err != nil {
			t.Fatal(err)
		}
		for c := 0; c < 10; c++ {
			must(n.Track(fmt.Sprintf("topic-%d", i), uint64(c)))
		}
		return n
	}
	for i := 0; i < 100; i++ {
		// The node is unreachable once Count has loaded its pointer.
		c, err := startTracked(i).Count(strings.Repeat("x", 0) + fmt.Sprintf("topic-%d", i))
		if err != nil || c != 10 {
			t.Fatalf("Count on a temporary node = %d, %v; want 10", c, err)
		}
		js, err := startTracked(i).StatsJSON()
		if err != nil || !strings.Contains(js, `"tracked_pairs":10`) {
			t.Fatalf("StatsJSON on a temporary node = %s, %v", js, err)
		}
	}
}
