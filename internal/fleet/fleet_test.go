package fleet

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/handoff-dev/handoff/internal/testdb"
	"github.com/jackc/pgx/v5"
)

// testNode is one node of a test fleet with the commands it applied.
type testNode struct {
	*Fleet
	mu      sync.Mutex
	applied []Command
	block   atomic.Pointer[chan struct{}] // while set, Apply waits on it
	fail    atomic.Pointer[string]
}

func (n *testNode) commands() []Command {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]Command(nil), n.applied...)
}

type nodeOpt func(*Options)

func openNode(t *testing.T, dsn, name string, opts ...nodeOpt) *testNode {
	t.Helper()
	n := &testNode{}
	o := Options{DSN: dsn, Node: name, Host: "host-" + name, Heartbeat: 100 * time.Millisecond, LostAfter: time.Second,
		AckTimeout: time.Second, Lease: 600 * time.Millisecond, Logger: slog.New(slog.NewTextHandler(tlog{t}, nil)),
		Apply: func(ctx context.Context, c Command) error {
			if ch := n.block.Load(); ch != nil {
				<-*ch
			}
			if msg := n.fail.Load(); msg != nil {
				return errors.New(*msg)
			}
			n.mu.Lock()
			defer n.mu.Unlock()
			n.applied = append(n.applied, c)
			return nil
		}}
	for _, opt := range opts {
		opt(&o)
	}
	f, err := Open(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	n.Fleet = f
	t.Cleanup(func() { f.Close() })
	return n
}

type tlog struct{ t *testing.T }

func (l tlog) Write(p []byte) (int, error) {
	l.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

func nodeNamed(t *testing.T, f *Fleet, name string) Node {
	t.Helper()
	nodes, err := f.Nodes(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes {
		if n.Name == name {
			return n
		}
	}
	t.Fatalf("node %s is not listed: %+v", name, nodes)
	return Node{}
}

// TestMembershipLostNodeIsShownAndRefusesCommands: a node that stops
// beating is lost after lost_after, still listed, and a fleet-wide
// command then fails naming it without recording anything; forgotten, it
// no longer blocks; started again, it rejoins.
func TestMembershipLostNodeIsShownAndRefusesCommands(t *testing.T) {
	dsn := testdb.Postgres(t)
	ctx := context.Background()
	a := openNode(t, dsn, "web-1")
	b := openNode(t, dsn, "web-2")
	nodes, err := a.Nodes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(nodes) != 2 || nodes[0].Lost || nodes[1].Lost || !nodes[0].Self || nodes[1].Self || nodes[1].Host != "host-web-2" {
		t.Fatalf("two live nodes, web-1 being this one: %+v", nodes)
	}
	time.Sleep(300 * time.Millisecond) // beyond a heartbeat, short of lost_after
	if n := nodeNamed(t, a.Fleet, "web-2"); n.Lost {
		t.Fatalf("web-2 beats every 100ms: %+v", n)
	}
	b.Close()
	time.Sleep(1300 * time.Millisecond)
	n := nodeNamed(t, a.Fleet, "web-2")
	if !n.Lost || n.Since < time.Second {
		t.Fatalf("web-2 silent for 1.3s must be lost (lost_after 1s): %+v", n)
	}
	var before int64
	a.pool.QueryRow(ctx, `SELECT count(*) FROM handoff_fleet_commands`).Scan(&before)
	_, err = a.Send(ctx, Command{Kind: "modes"}, true)
	var lost *LostError
	if !errors.As(err, &lost) || !strings.Contains(err.Error(), "node web-2 is lost") || !strings.Contains(err.Error(), "nothing was changed") {
		t.Fatalf("a command with a lost node must fail naming it: %v", err)
	}
	var after int64
	a.pool.QueryRow(ctx, `SELECT count(*) FROM handoff_fleet_commands`).Scan(&after)
	if after != before {
		t.Fatalf("a refused command must record nothing: %d commands before, %d after", before, after)
	}
	if err := a.Forget(ctx, "web-1"); err == nil || !strings.Contains(err.Error(), "node web-1 is live") {
		t.Fatalf("a live node cannot be forgotten: %v", err)
	}
	if err := a.Forget(ctx, "web-9"); err == nil || !strings.Contains(err.Error(), "there is no node web-9 (the nodes: web-1, web-2)") {
		t.Fatalf("forgetting an unknown node names the nodes: %v", err)
	}
	if err := a.Forget(ctx, "web-2"); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Send(ctx, Command{Kind: "modes"}, true); err != nil {
		t.Fatalf("with web-2 forgotten the fleet is web-1 alone: %v", err)
	}
	openNode(t, dsn, "web-2")
	if n := nodeNamed(t, a.Fleet, "web-2"); n.Lost {
		t.Fatalf("web-2 started again is live: %+v", n)
	}
}

// TestNodeNameLiveElsewhereIsRefused: two hosts cannot both be web-1; the
// same host (a restart, an upgrade's successor) takes the name over.
func TestNodeNameLiveElsewhereIsRefused(t *testing.T) {
	dsn := testdb.Postgres(t)
	openNode(t, dsn, "web-1")
	_, err := Open(context.Background(), Options{DSN: dsn, Node: "web-1", Host: "elsewhere", Heartbeat: 100 * time.Millisecond,
		LostAfter: time.Second, AckTimeout: time.Second, Lease: time.Second})
	if err == nil || !strings.Contains(err.Error(), "node web-1 is live on host host-web-1") {
		t.Fatalf("want the name refused, naming the host that has it: %v", err)
	}
	again := openNode(t, dsn, "web-1")
	if n := nodeNamed(t, again.Fleet, "web-1"); n.Lost || n.Host != "host-web-1" {
		t.Fatalf("the same host takes its name over: %+v", n)
	}
}

// TestCommandAckedByEveryNodeByNotification: a command reaches two other
// nodes and is acknowledged well within a second; the heartbeat is made
// long (5 s) so that only the notification can explain it.
func TestCommandAckedByEveryNodeByNotification(t *testing.T) {
	dsn := testdb.Postgres(t)
	ctx := context.Background()
	slow := func(o *Options) {
		o.Heartbeat, o.LostAfter, o.Lease, o.AckTimeout = 5*time.Second, 20*time.Second, 20*time.Second, 2*time.Second
	}
	a := openNode(t, dsn, "web-1", slow)
	b := openNode(t, dsn, "web-2", slow)
	c := openNode(t, dsn, "web-3", slow)
	time.Sleep(200 * time.Millisecond) // the LISTEN connections are up
	var worst time.Duration
	for i := range 20 {
		start := time.Now()
		res, err := a.Send(ctx, Command{Kind: "modes"}, true)
		if err != nil {
			t.Fatal(err)
		}
		took := time.Since(start)
		worst = max(worst, took)
		if len(res.Acked) != 3 {
			t.Fatalf("command %d: want acks of all three nodes, got %v", i, res.Acked)
		}
	}
	t.Logf("20 commands, slowest acknowledged by all three nodes in %s", worst)
	// Polling alone would take up to the 5s heartbeat.
	if worst > time.Second {
		t.Fatalf("the slowest command took %s to be acknowledged; want under 1s", worst)
	}
	if len(a.commands()) != 0 {
		t.Fatalf("the sender applied its own command already: it must not apply it again, got %v", a.commands())
	}
	for _, n := range []*testNode{b, c} {
		if got := len(n.commands()); got != 20 {
			t.Fatalf("%s applied %d commands, want 20", n.Name(), got)
		}
	}
	// A command for one node reaches it alone.
	if _, err := a.Send(ctx, Command{Kind: "drain", Target: "web-3"}, false); err != nil {
		t.Fatal(err)
	}
	if got := b.commands(); len(got) != 20 {
		t.Fatalf("web-2 got a command for web-3: %v", got[len(got)-1])
	}
	if got := c.commands(); got[len(got)-1].Kind != "drain" || got[len(got)-1].By != "web-1" {
		t.Fatalf("web-3 did not get its drain: %+v", got[len(got)-1])
	}
}

// TestCommandByPollingWithoutNotification: a node without its LISTEN
// connection applies the command at its next heartbeat.
func TestCommandByPollingWithoutNotification(t *testing.T) {
	dsn := testdb.Postgres(t)
	a := openNode(t, dsn, "web-1")
	b := openNode(t, dsn, "web-2", func(o *Options) { o.noListen = true })
	res, err := a.Send(context.Background(), Command{Kind: "modes"}, true)
	if err != nil {
		t.Fatal(err)
	}
	if len(b.commands()) != 1 {
		t.Fatalf("polling every 100ms acknowledges within a few heartbeats: %v, applied %v", res.Acked, b.commands())
	}
}

// TestAckTimeoutAndFailureNameTheNode: a node that does not answer in
// time, or fails, is named; the others' acks are listed.
func TestAckTimeoutAndFailureNameTheNode(t *testing.T) {
	dsn := testdb.Postgres(t)
	ctx := context.Background()
	a := openNode(t, dsn, "web-1")
	b := openNode(t, dsn, "web-2")
	c := openNode(t, dsn, "web-3")
	ch := make(chan struct{})
	b.block.Store(&ch)
	_, err := a.Send(ctx, Command{Kind: "modes"}, true)
	var ack *AckError
	if !errors.As(err, &ack) || !strings.Contains(err.Error(), "web-2 did not acknowledge within 1s") || !strings.Contains(err.Error(), "acknowledged by web-1, web-3") {
		t.Fatalf("want web-2 named as missing: %v", err)
	}
	close(ch)
	b.block.Store(nil)
	msg := "the store is read-only"
	c.fail.Store(&msg)
	_, err = a.Send(ctx, Command{Kind: "modes"}, true)
	if !errors.As(err, &ack) || !strings.Contains(err.Error(), "node web-3 failed: the store is read-only") {
		t.Fatalf("want web-3's failure named: %v", err)
	}
	if got := len(b.commands()); got != 2 {
		t.Fatalf("web-2 applies both commands once it is free: %d", got)
	}
}

// TestLeaseFencing: one holder at a time; an expired lease is taken over
// with a higher token, and the old holder's fenced write is refused.
func TestLeaseFencing(t *testing.T) {
	dsn := testdb.Postgres(t)
	ctx := context.Background()
	a := openNode(t, dsn, "web-1")
	b := openNode(t, dsn, "web-2")
	la, err := a.acquire(ctx, "deploy") // no renewal: it will expire
	if err != nil {
		t.Fatal(err)
	}
	_, err = b.Acquire(ctx, "deploy")
	var held *HeldError
	if !errors.As(err, &held) || held.Holder != "web-1" {
		t.Fatalf("want the lease held by web-1: %v", err)
	}
	write := func(l *Lease, who string) error {
		return l.Fenced(ctx, func(tx pgx.Tx) error {
			_, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS fenced (who text)`)
			if err == nil {
				_, err = tx.Exec(ctx, `INSERT INTO fenced VALUES ($1)`, who)
			}
			return err
		})
	}
	if err := write(la, "web-1"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(700 * time.Millisecond) // lease is 600ms
	lb, err := b.Acquire(ctx, "deploy")
	if err != nil {
		t.Fatal(err)
	}
	defer lb.Release(ctx)
	if lb.Token() <= la.Token() {
		t.Fatalf("a new holder's token must be higher: %d then %d", la.Token(), lb.Token())
	}
	if err := write(la, "web-1 late"); !errors.Is(err, ErrLeaseLost) {
		t.Fatalf("the old leader's late write must be refused: %v", err)
	}
	// Nor may it send a command as the leader: the command and the state
	// that records it are written under the lease, or not at all.
	if _, err := a.SendUnder(ctx, la, Command{Kind: "fenced-deploy", Target: "web-2"}, false, time.Second, func(int64) any { return "sent" }); !errors.Is(err, ErrLeaseLost) {
		t.Fatalf("the old leader's late command must be refused: %v", err)
	}
	var sent int
	if err := a.pool.QueryRow(ctx, `SELECT count(*) FROM handoff_fleet_commands WHERE kind = 'fenced-deploy'`).Scan(&sent); err != nil || sent != 0 {
		t.Fatalf("a refused command was recorded: %d %v", sent, err)
	}
	if err := la.renew(ctx); !errors.Is(err, ErrLeaseLost) {
		t.Fatalf("the old leader cannot renew: %v", err)
	}
	if err := write(lb, "web-2"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(700 * time.Millisecond) // renewed in the background
	if err := write(lb, "web-2 later"); err != nil {
		t.Fatalf("a renewed lease keeps its writes: %v", err)
	}
	var got []string
	rows, _ := a.pool.Query(ctx, `SELECT who FROM fenced`)
	got, err = pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil || strings.Join(got, ",") != "web-1,web-2,web-2 later" {
		t.Fatalf("fenced writes: %v %v", got, err)
	}
	if err := lb.Release(ctx); err != nil {
		t.Fatal(err)
	}
	lc, err := a.Acquire(ctx, "deploy")
	if err != nil {
		t.Fatalf("a released lease is free at once: %v", err)
	}
	lc.Release(ctx)
}

// TestTargetLostWhileItWorks: a long wait for a node that is lost in the
// meantime (killed while it ran a deploy) ends once it is lost, naming it,
// not at the end of the wait.
func TestTargetLostWhileItWorks(t *testing.T) {
	dsn := testdb.Postgres(t)
	a := openNode(t, dsn, "web-1")
	b := openNode(t, dsn, "web-2")
	ch := make(chan struct{})
	b.block.Store(&ch)
	defer close(ch)
	go func() {
		time.Sleep(300 * time.Millisecond)
		b.cancel() // its loops stop: no heartbeat, no acknowledgement
	}()
	start := time.Now()
	_, err := a.SendWait(context.Background(), Command{Kind: "deploy", Target: "web-2"}, false, time.Minute)
	var ack *AckError
	if !errors.As(err, &ack) || !strings.Contains(err.Error(), "node web-2 was lost before it acknowledged") {
		t.Fatalf("want web-2 named lost: %v", err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("the wait ended %s after the send; lost_after is 1s", took)
	}
}

// Two nodes send at once, one under a lease (SendUnder: its transaction
// does more before it commits): every command reaches its target. Ids are
// drawn at insert and rows seen at commit, and a node reads the commands
// after the last id it applied; without senders taking turns, a command
// that committed after a later one was left behind that mark for good.
func TestConcurrentSendersLoseNoCommand(t *testing.T) {
	dsn := testdb.Postgres(t)
	ctx := context.Background()
	slow := func(o *Options) { o.AckTimeout = 2 * time.Second; o.Lease = 30 * time.Second }
	a := openNode(t, dsn, "web-1", slow)
	c := openNode(t, dsn, "web-3", slow)
	_ = openNode(t, dsn, "web-2", slow)
	time.Sleep(300 * time.Millisecond)
	lease, err := a.Acquire(ctx, "deploy/web")
	if err != nil {
		t.Fatal(err)
	}
	defer lease.Release(ctx)
	for i := range 30 {
		var wg sync.WaitGroup
		errs := make([]error, 2)
		wg.Go(func() {
			_, errs[0] = a.SendUnder(ctx, lease, Command{Kind: "deploy", Target: "web-2"}, false, 2*time.Second, func(id int64) any { return map[string]int64{"cmd": id} })
		})
		wg.Go(func() { _, errs[1] = c.Send(ctx, Command{Kind: "modes"}, true) })
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			t.Fatalf("round %d: %v", i, err)
		}
	}
}

// TestRestartedTargetEndsTheWait: a node whose handoff starts again while
// a command for it waits for its acknowledgement (it acknowledges when
// done, and its process stopped first) will never acknowledge: the new
// process applies only newer commands. The sender's long wait ends once
// the restart is seen, naming it, not at its bound.
func TestRestartedTargetEndsTheWait(t *testing.T) {
	dsn := testdb.Postgres(t)
	ctx := context.Background()
	a := openNode(t, dsn, "web-1")
	later := func(o *Options) {
		o.Apply = func(context.Context, Command) error { return ErrAckLater }
	}
	b := openNode(t, dsn, "web-2", later)
	go func() {
		time.Sleep(300 * time.Millisecond)
		b.Close()
		openNode(t, dsn, "web-2", later)
	}()
	start := time.Now()
	_, err := a.SendWait(ctx, Command{Kind: "deploy", Target: "web-2"}, false, 30*time.Second)
	var ae *AckError
	if !errors.As(err, &ae) || len(ae.Restarted) != 1 || ae.Restarted[0] != "web-2" || !strings.Contains(err.Error(), "node web-2 restarted before it acknowledged") {
		t.Fatalf("want the wait ended naming web-2 restarted: %v", err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("the wait ended %s after the send, not at the restart", took)
	}
}
