package headcount

import (
	"encoding/json"
	"fmt"
	"net"
	"sort"
	"strings"
	"testing"
	"time"
)

const clusterSecret = "go-binding-test-secret"

// startClustered starts a node that listens on a free loopback port.
func startClustered(t *testing.T, name string, seeds ...string) *Node {
	t.Helper()
	cfg := Config{
		NodeName:      name,
		Listen:        "127.0.0.1:0",
		Seeds:         seeds,
		Secret:        clusterSecret,
		FlushInterval: 20 * time.Millisecond,
		DownAfter:     3 * time.Second,
	}
	n, err := Start(cfg)
	if err != nil {
		t.Fatalf("Start(%+v): %v", cfg, err)
	}
	t.Cleanup(func() { n.Close() })
	return n
}

// eventually polls cond until it returns "" or the deadline passes.
func eventually(t *testing.T, within time.Duration, cond func() string) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		msg := cond()
		if msg == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %s", within, msg)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// checkAll reports the first node/topic whose Count differs from want.
func checkAll(nodes []*Node, want map[string]uint64) string {
	for i, n := range nodes {
		for topic, w := range want {
			c, err := n.Count(topic)
			if err != nil {
				return fmt.Sprintf("node %d Count(%q): %v", i, topic, err)
			}
			if c != w {
				return fmt.Sprintf("node %d Count(%q) = %d, want %d", i, topic, c, w)
			}
		}
	}
	return ""
}

// Three nodes in one process, joined through one seed, converge to exact
// cluster-wide counts; a node that closes is dropped at once by the others.
func TestClusterOfThreeConverges(t *testing.T) {
	a := startClustered(t, "a")
	addr := a.LocalAddr()
	if _, _, err := net.SplitHostPort(addr); err != nil || strings.HasSuffix(addr, ":0") {
		t.Fatalf("LocalAddr = %q, want the bound host:port", addr)
	}
	b := startClustered(t, "b", addr)
	c := startClustered(t, "c", addr) // c learns of b from a (gossip)
	nodes := []*Node{a, b, c}

	// Node i tracks (i+1)*10 connections in "room" and i+1 in its own topic.
	want := map[string]uint64{"room": 0}
	for i, n := range nodes {
		for conn := 0; conn < (i+1)*10; conn++ {
			must(n.Track("room", uint64(conn)))
		}
		own := fmt.Sprintf("only-%d", i)
		for conn := 0; conn <= i; conn++ {
			must(n.Track(own, uint64(conn)))
		}
		want["room"] += uint64((i + 1) * 10)
		want[own] = uint64(i + 1)
	}
	eventually(t, 5*time.Second, func() string { return checkAll(nodes, want) })

	for i, n := range nodes {
		info := must(n.CountInfo("room"))
		if info.Count != 60 || info.Local != uint64((i+1)*10) || info.PeersKnown != 2 || info.PeersReporting != 2 {
			t.Errorf("node %d CountInfo(room) = %+v, want Count 60, Local %d, 2 peers known and reporting",
				i, info, (i+1)*10)
		}
		if info.OldestReportAge < 0 || info.OldestReportAge > 5*time.Second {
			t.Errorf("node %d OldestReportAge = %v", i, info.OldestReportAge)
		}
		if tot := must(n.Total()); tot != 66 {
			t.Errorf("node %d Total = %d, want 66", i, tot)
		}
		if must(n.CountLocal("room")) != uint64((i+1)*10) {
			t.Errorf("node %d CountLocal(room) wrong", i)
		}
		var stats struct {
			Node  string
			Peers []struct{ Name, State string }
		}
		js := must(n.StatsJSON())
		if err := json.Unmarshal([]byte(js), &stats); err != nil {
			t.Fatalf("node %d StatsJSON: %v\n%s", i, err, js)
		}
		var peers []string
		for _, p := range stats.Peers {
			peers = append(peers, p.Name+"/"+p.State)
		}
		sort.Strings(peers)
		wantPeers := map[int]string{0: "b/up c/up", 1: "a/up c/up", 2: "a/up b/up"}[i]
		if stats.Node != "abc"[i:i+1] || strings.Join(peers, " ") != wantPeers {
			t.Errorf("node %d stats: node %q, peers %v; want %q, %s\n%s", i, stats.Node, peers, "abc"[i:i+1], wantPeers, js)
		}
	}

	// Changes propagate: b's connections leave.
	for conn := 0; conn < 20; conn++ {
		must(b.UntrackAll(uint64(conn)))
	}
	want["room"] = 40
	want["only-1"] = 0
	eventually(t, 5*time.Second, func() string { return checkAll(nodes, want) })

	// c leaves gracefully; a and b drop its counts at once (BYE), well before
	// DownAfter (3s) would have.
	c.Close()
	want["room"] = 10
	want["only-2"] = 0
	eventually(t, time.Second, func() string { return checkAll(nodes[:2], want) })
	if k := must(a.CountInfo("room")).PeersKnown; k != 1 {
		t.Errorf("a knows %d peers after c left, want 1", k)
	}
}

// AddPeer joins a running node to a cluster.
func TestClusterAddPeer(t *testing.T) {
	a := startClustered(t, "a")
	must(a.Track("room", 1))
	d := startClustered(t, "d")
	must(d.Track("room", 2))
	if err := d.AddPeer(a.LocalAddr()); err != nil {
		t.Fatalf("AddPeer(%q): %v", a.LocalAddr(), err)
	}
	eventually(t, 5*time.Second, func() string {
		return checkAll([]*Node{a, d}, map[string]uint64{"room": 2})
	})
	wantErr(t, "AddPeer(not an address)", d.AddPeer("not an address"), ErrInvalidArg)
}

// Binding an address that is in use is ErrIO.
func TestClusterListenInUse(t *testing.T) {
	a := startClustered(t, "a")
	n, err := Start(Config{Listen: a.LocalAddr(), Secret: clusterSecret})
	if err == nil {
		n.Close()
		t.Fatalf("a second node listening on %s started", a.LocalAddr())
	}
	wantErr(t, "Start(listen in use)", err, ErrIO)
}

// Secret is passed through: a node with another secret is refused and
// never sees the cluster's counts, nor the cluster its.
func TestClusterWrongSecret(t *testing.T) {
	a := startClustered(t, "a")
	must(a.Track("room", 1))
	e, err := Start(Config{NodeName: "e", Listen: "127.0.0.1:0", Seeds: []string{a.LocalAddr()},
		Secret: "another secret", FlushInterval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	must(e.Track("room", 2))
	eventually(t, 5*time.Second, func() string {
		var stats struct {
			AuthFailures int `json:"auth_failures"`
		}
		if err := json.Unmarshal([]byte(must(a.StatsJSON())), &stats); err != nil || stats.AuthFailures == 0 {
			return fmt.Sprintf("a counted no auth failure (%v)", err)
		}
		return ""
	})
	time.Sleep(200 * time.Millisecond) // 10 flush intervals
	for name, n := range map[string]*Node{"a": a, "e": e} {
		if info := must(n.CountInfo("room")); info.Count != 1 || info.PeersKnown != 0 {
			t.Errorf("%s: CountInfo(room) = %+v, want only its own count and no peers", name, info)
		}
	}
}
