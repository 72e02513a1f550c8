// Package headcount keeps exact cluster-wide counts of connected users per
// topic ("1,284 people in this room"), embedding the headcount library
// through its C ABI (libheadcount.a, linked statically by cgo).
//
// Each node counts its own connections per topic exactly, with lock-free
// per-CPU counters, and ships only the counts that changed to its peers over
// authenticated TCP. A node's Count is its exact local count plus the last
// count each live peer reported.
//
//	n, err := headcount.Start(headcount.Config{NodeName: "a"}) // local-only
//	if err != nil { ... }
//	defer n.Close()
//	n.Track("room:1", connID)   // a connection joins a topic
//	c, _ := n.Count("room:1")   // cluster-wide count
//	n.UntrackAll(connID)        // the connection went away
//
// A clustered node sets Listen and/or Seeds and a shared Secret:
//
//	headcount.Config{NodeName: "b", Listen: "0.0.0.0:7401",
//		Seeds: []string{"10.0.0.1:7401"}, Secret: os.Getenv("HEADCOUNT_SECRET")}
//
// Topics are arbitrary bytes (a Go string may hold any), 1 to
// max_topic_len (default 1024) bytes. Connections are any uint64 id the
// application chooses.
//
// # Errors
//
// Every error is an *Error carrying the library's Status and message.
// Compare with errors.Is against ErrInvalidTopic, ErrConfig, ErrClosed and
// the other sentinels.
//
// # Concurrency and lifetime
//
// A *Node is safe for concurrent use by any number of goroutines. Close
// leaves the cluster gracefully and waits for calls in progress; calls after
// Close return ErrClosed. A node that is never closed is freed by a
// finalizer once unreachable, but peers then keep counting it until they
// notice it is gone, so close nodes explicitly.
//
// # Building
//
// The package links the release static library that "go generate" (run once
// in this directory) builds with cargo and places inside the module, in
// build/; then a plain "go build" or "go test" works, and "go mod vendor"
// carries the library along. Build with -tags headcount_external to supply
// the library through CGO_LDFLAGS instead. See README.md.
package headcount
