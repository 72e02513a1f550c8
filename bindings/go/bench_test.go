package headcount_test

// Per-call cost from Go, beside the floor of any call into the library:
//
//	go test -run '^$' -bench . -benchtime 1000000x
//
// BenchmarkVersion is one cgo call that does nothing but return a static
// string (hc_version): what every call costs before the library does any
// work. The others are the methods users call on every connection.

import (
	"testing"

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
