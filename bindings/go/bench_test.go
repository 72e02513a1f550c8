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
// copy into Go memory, the channel hand-off). BenchmarkWatchChurn/watch:
// one watch on all of 1M topics while 10k of them change per round
// (flush_interval_ms 1), from the first Add to the last of the 10k changes
// received, less the test's own bookkeeping; BenchmarkWatchChurn/calls-only
// runs the same Adds with no watch, so the difference is what delivering a
// change costs. Each also reports cpu-ns/change, the process's CPU time
// (every thread: the library's and the goroutines') over the same spans:
// the figure to compare on a shared machine.

import (
	"fmt"
	"syscall"
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

// cpuTime is the CPU time this process has used (user + system, all
// threads).
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
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
	var elapsed, cpu time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0, c0 := time.Now(), cpuTime(b)
		w, err := n.Watch("", headcount.WatchInitial)
		if err != nil {
			b.Fatal(err)
		}
		if batch := <-w.C; len(batch) != watchTopics {
			b.Fatalf("initial batch of %d changes, want %d", len(batch), watchTopics)
		}
		elapsed += time.Since(t0)
		cpu += cpuTime(b) - c0
		b.StopTimer()
		w.Close()
		b.StartTimer()
	}
	b.ReportMetric(float64(elapsed.Nanoseconds())/float64(b.N*watchTopics), "ns/change")
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N*watchTopics), "cpu-ns/change")
}

func BenchmarkWatchChurn(b *testing.B) {
	n, topics := benchTopics(b, headcount.Config{NodeName: "bench", FlushInterval: time.Millisecond})
	w, err := n.Watch("", 0)
	if err != nil {
		b.Fatal(err)
	}
	defer w.Close()
	round := 0 // shared by both: each range of topics goes +1 then -1
	b.Run("watch", func(b *testing.B) { churn(b, n, topics, w, &round) })
	b.Run("calls-only", func(b *testing.B) {
		w.Close() // no watch: what the Adds alone cost
		churn(b, n, topics, nil, &round)
	})
}

// churn runs b.N rounds of 10k Adds on distinct topics and, with a watch,
// waits for each of them to be delivered.
func churn(b *testing.B, n *headcount.Node, topics []string, w *headcount.Watch, round *int) {
	const perRound = 10_000
	var elapsed, cpu time.Duration
	for i := 0; i < b.N; i++ {
		r := *round
		*round++
		// Each range of topics goes +1 then -1: counts stay 1 or 2.
		delta := int64(1 - 2*(r%2))
		first := (r / 2 * perRound) % (watchTopics - perRound)
		// Until every topic of the round was delivered at its new count
		// (a late batch of the setup may come first).
		want := uint64(2 - r%2)
		left := map[string]bool{}
		for _, t := range topics[first : first+perRound] {
			left[t] = true
		}
		t0, c0 := time.Now(), cpuTime(b)
		for _, t := range topics[first : first+perRound] {
			if err := n.Add(t, delta); err != nil {
				b.Fatal(err)
			}
		}
		for w != nil && len(left) > 0 {
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
		cpu += cpuTime(b) - c0
	}
	b.ReportMetric(float64(elapsed.Nanoseconds())/float64(b.N*perRound), "ns/change")
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N*perRound), "cpu-ns/change")
}
