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
