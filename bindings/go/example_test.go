package headcount_test

import (
	"errors"
	"fmt"
	"log"

	"github.com/headcount-rs/headcount/bindings/go"
)

func Example() {
	// A local-only node; set Listen, Seeds and Secret to join a cluster.
	n, err := headcount.Start(headcount.Config{NodeName: "example"})
	if err != nil {
		log.Fatal(err)
	}
	defer n.Close()

	// Three connections join room:1; connection 1 joins twice (counted once).
	for _, conn := range []uint64{1, 2, 3, 1} {
		if _, err := n.Track("room:1", conn); err != nil {
			log.Fatal(err)
		}
	}
	n.Track("room:2", 2)
	c, _ := n.Count("room:1")
	fmt.Println("room:1:", c)

	// Connection 2 disconnects: it leaves every topic it was in.
	left, _ := n.UntrackAll(2)
	c, _ = n.Count("room:1")
	fmt.Println("conn 2 left", left, "topics; room:1:", c)

	_, err = n.Track("", 4)
	fmt.Println("empty topic rejected:", errors.Is(err, headcount.ErrInvalidTopic))
	// Output:
	// room:1: 3
	// conn 2 left 2 topics; room:1: 2
	// empty topic rejected: true
}

func ExampleNode_Watch() {
	n, err := headcount.Start(headcount.Config{NodeName: "example"})
	if err != nil {
		log.Fatal(err)
	}
	defer n.Close()
	n.Track("room:1", 1)
	n.Track("room:1", 2)

	// WatchInitial: the first batch holds every matching non-zero topic
	// (pending, unflushed tracks reach the watch later, with their flush).
	w, err := n.Watch("room:", headcount.WatchInitial)
	if err != nil {
		log.Fatal(err)
	}
	defer w.Close()
	fmt.Println(<-w.C)

	// Later changes come in batches, each topic once with its latest
	// count, no later than the flush that ships them to peers. Keep the
	// last value per topic: once changes stop, it is the topic's Count.
	n.Track("lobby", 3) // not under "room:"
	n.UntrackAll(1)
	n.UntrackAll(2)
	last := map[string]uint64{}
	for batch := range w.C {
		for _, c := range batch {
			last[c.Topic] = c.Count
		}
		if last["room:1"] == 0 {
			break
		}
	}
	fmt.Println(last)

	top, _ := n.Top(10, "")
	fmt.Println(top)
	// Output:
	// [{room:1 2 2}]
	// map[room:1:0]
	// [{lobby 1}]
}
