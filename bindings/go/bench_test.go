package headcount_test

// Per-call cost from Go, beside the floor of any call into the library:
//
//	go test -run '^$' -bench . -benchtime 1000000x
//
// BenchmarkVersion is one cgo call that does nothing but return a static
// string (hc_version): what every call costs before the library does any
// work. Track and Count are the methods users call on every connection.
//
// The change feed, per delivered change (ns/change):
//
//	go test -run '^$' -bench Watch -benchtime 5x
//
// BenchmarkWatchInitial: one WatchInitial watch on all of 1M topics, from
// Watch to the 1M-change batch received from C (the library's scan, the
// copy into Go memory, the channel hand-off). BenchmarkWatchChurn: one
// watch on all of 1M topics while 10k of them change per round, from the
// first Add to the last of the 10k changes received, less the test's own
// bookkeeping (flush_interval_ms 1,
// so it includes the Adds and up to one flush interval of waiting).

import (
	"fmt"
	"testing"
	"time"

	headcount "github.com/headcount-rs/headcount/bindings/go"
)

func benchNode(b *testing.B) *headcount.Node {
	b.Helper()
	n, err := headcount.Start(headcount.Config{NodeName: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { n.Close() })
	return n
}

func BenchmarkVersion(b *testing.B) {
	for i := 0; i < b.N; i++ {
		if headcount.Version() == "" {
			b.Fatal("empty version")
		}
	}
}

func BenchmarkTrack(b *testing.B) {
	n := benchNode(b)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := n.Track("room", 1); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkCount(b *testing.B) {
	n := benchNode(b)
	if _, err := n.Track("room", 1); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := n.Count("room"); err != nil {
			b.Fatal(err)
		}
	}
}

// watchTopics are the 1M topics of the watch benchmarks.
const watchTopics = 1_000_000

func benchTopics(b *testing.B, cfg headcount.Config) (*headcount.Node, []string) {
	b.Helper()
	n, err := headcount.Start(cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { n.Close() })
	topics := make([]string, watchTopics)
	for i := range topics {
		topics[i] = fmt.Sprintf("room:%07d", i)
		if err := n.Add(topics[i], 1); err != nil {
			b.Fatal(err)
		}
	}
	return n, topics
}

func BenchmarkWatchInitial(b *testing.B) {
	n, _ := benchTopics(b, headcount.Config{NodeName: "bench"})
	var elapsed time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		w, err := n.Watch("", headcount.WatchInitial)
		if err != nil {
			b.Fatal(err)
		}
		if batch := <-w.C; len(batch) != watchTopics {
			b.Fatalf("initial batch of %d changes, want %d", len(batch), watchTopics)
		}
		elapsed += time.Since(t0)
		b.StopTimer()
		w.Close()
		b.StartTimer()
	}
	b.ReportMetric(float64(elapsed.Nanoseconds())/float64(b.N*watchTopics), "ns/change")
}

func BenchmarkWatchChurn(b *testing.B) {
	const perRound = 10_000
	n, topics := benchTopics(b, headcount.Config{NodeName: "bench", FlushInterval: time.Millisecond})
	w, err := n.Watch("", 0)
	if err != nil {
		b.Fatal(err)
	}
	defer w.Close()
	var elapsed time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		// Each range of topics goes +1 then -1: counts stay 1 or 2.
		delta := int64(1 - 2*(i%2))
		first := (i / 2 * perRound) % (watchTopics - perRound)
		// Until every topic of the round was delivered at its new count
		// (a late batch of the setup may come first).
		want := uint64(2 - i%2)
		left := map[string]bool{}
		for _, t := range topics[first : first+perRound] {
			left[t] = true
		}
		t0 := time.Now()
		for _, t := range topics[first : first+perRound] {
			if err := n.Add(t, delta); err != nil {
				b.Fatal(err)
			}
		}
		for len(left) > 0 {
			batch, ok := <-w.C
			if !ok {
				b.Fatal("C closed")
			}
			for _, c := range batch {
				if c.Count == want {
					delete(left, c.Topic)
				}
			}
		}
		elapsed += time.Since(t0)
	}
	b.ReportMetric(float64(elapsed.Nanoseconds())/float64(b.N*perRound), "ns/change")
}
