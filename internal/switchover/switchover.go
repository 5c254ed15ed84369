// Package switchover moves a database endpoint from the current primary to
// its caught-up replica under one deadline, and rolls the move back when the
// deadline is missed.
//
// The order, under the one deadline: hold new HTTP requests at the gateway
// (in-flight ones finish), hold new transactions at the database endpoint,
// fence the old primary (no more writes on it, by anyone), wait until the
// replica has everything the old primary wrote, promote the replica, point
// the endpoint at it, resume the database, then HTTP. Promotion is the point
// of no return: before it, any failure or a missed deadline rolls back (old
// primary writable again, endpoint where it was, both resumed); from it on,
// the switchover is finished, since the promoted server may already be
// written to and the old one must stay fenced.
//
// Every step is recorded in the Journal before it acts, so a handoff killed
// mid-way finishes or rolls back on restart (Recover) and never leaves two
// writable primaries, nor an endpoint pointing at a fenced server.
//
// Two variants share the steps and the journal: --reverse (reverse.go)
// subscribes the old primary to the new one after a logical promotion, and
// migrate on a copy (copy.go) runs migrations on the detached replica
// while the site is read-only, its point of no return being the move of
// the endpoint rather than the promotion.
package switchover

import (
	"context"
	"fmt"
	"time"
)

// Endpoint is the database endpoint the app's sessions go through.
// *dbproxy.Endpoint implements it.
type Endpoint interface {
	// Pause holds new transactions and returns once none is open.
	Pause(ctx context.Context) error
	// Repoint moves sessions to addr between transactions.
	Repoint(addr string) error
	// Resume releases what Pause held.
	Resume()
}

// Gate is the HTTP gateway: it holds new requests and waits for in-flight
// ones.
type Gate interface {
	// Hold holds new requests and returns once none is in flight; release
	// lets the held ones go on.
	Hold(ctx context.Context) (release func(), err error)
}

// Pair is a primary and its replica, as one kind of replication sees them:
// what the switchover needs of the database servers. Postgres (physical and
// logical) and MySQL/MariaDB (GTID) implement it. Every method but Check is
// idempotent: recovery after a crash calls them again.
type Pair interface {
	// Kind names the replication: "postgres-physical", "postgres-logical",
	// "mysql-gtid".
	Kind() string
	// Check refuses a pair whose replica does not replicate from the
	// primary, or where a transaction has been open on the primary for
	// longer than longTx, naming what is wrong.
	Check(ctx context.Context, longTx time.Duration) error
	// Position is the primary's current write position (LSN, GTID set).
	Position(ctx context.Context) (string, error)
	// CaughtUp returns once the replica has applied everything up to pos,
	// or ctx's error.
	CaughtUp(ctx context.Context, pos string) error
	// Fence stops every write on the primary, from any client: those
	// through the endpoint and those that bypass it.
	Fence(ctx context.Context) error
	// Unfence makes the primary writable again (a rollback).
	Unfence(ctx context.Context) error
	// Prepare readies the caught-up replica to take writes without
	// committing to it (sequences of a logical subscriber); it runs under
	// the deadline, before the point of no return.
	Prepare(ctx context.Context) error
	// Promote makes the replica a writable primary that no longer
	// replicates from the old one.
	Promote(ctx context.Context) error
	// Promoted reports whether the replica has become a writable primary
	// (asked after a failed Promote: if not, the switchover rolls back).
	Promoted(ctx context.Context) (bool, error)
	// Addrs are the host:port of the primary and of the replica, as the
	// endpoint dials them.
	Addrs() (primary, replica string)
	// Close closes the pair's connections.
	Close() error
}

// Step is where a switchover is. The journal holds the step about to be
// acted on.
type Step string

// The steps, in order; RolledBack and Done are final.
const (
	Checking    Step = "checking"    // preconditions, before the deadline starts
	Holding     Step = "holding"     // HTTP held, then the endpoint paused
	Fencing     Step = "fencing"     // writes stopped on the old primary
	CatchingUp  Step = "catching-up" // the replica applies the rest
	Promoting   Step = "promoting"   // the point of no return (of a switchover, not of a copy)
	Reversing   Step = "reversing"   // --reverse: the old primary subscribes to the new one
	Repointing  Step = "repointing"  // the endpoint moves to the new primary
	Resuming    Step = "resuming"    // the database, then HTTP, go on
	Done        Step = "done"
	RollingBack Step = "rolling-back"
	RolledBack  Step = "rolled-back"

	// Steps of a migrate-on-copy (copy.go) besides the ones above.
	ReadOnlyOn Step = "read-only" // the gateway refuses writes; in-flight ones finish
	Migrating  Step = "migrating" // the migrations run on the detached copy
)

// committed reports whether a switchover at step s is past the point of no
// return: it must be finished, never rolled back.
func (s Step) committed() bool {
	switch s {
	case Promoting, Reversing, Repointing, Resuming, Done:
		return true
	}
	return false
}

// Committed reports whether the record's operation is past its point of no
// return: a switchover's is the promotion; a migrate-on-copy's is the move
// of the endpoint, since until then nothing but handoff has written to the
// copy and the old primary is untouched.
func (r Record) Committed() bool {
	if r.Migrate != "" {
		switch r.Step {
		case Repointing, Resuming, Done:
			return true
		}
		return false
	}
	return r.Step.committed()
}

// Final reports whether s ends a switchover.
func (s Step) Final() bool { return s == Done || s == RolledBack }

// Record is the journal's entry for one database's switchover, written
// before each step acts.
type Record struct {
	Name string `json:"name"`
	// Node is the fleet node that runs it (empty: no fleet).
	Node     string `json:"node,omitempty"`
	Kind     string `json:"kind"`
	From     string `json:"from"` // URL of the old primary
	To       string `json:"to"`   // URL of the replica
	FromAddr string `json:"from_addr"`
	// Subscription and Slot name a logical subscriber's subscription and
	// its slot on the old primary.
	Subscription string        `json:"subscription,omitempty"`
	Slot         string        `json:"slot,omitempty"`
	ToAddr       string        `json:"to_addr"`
	Deadline     time.Duration `json:"deadline_ns"`
	// Reverse: after the promotion, the old primary subscribes to the new
	// one (a logical switchover with --reverse), so that a switch back
	// loses nothing.
	Reverse bool `json:"reverse,omitempty"`
	// Migrate is the migration directory of a migrate-on-copy (copy.go),
	// empty for a plain switchover; Window bounds its read-only window.
	Migrate string        `json:"migrate,omitempty"`
	Window  time.Duration `json:"window_ns,omitempty"`
	Started time.Time     `json:"started"`
	Step    Step          `json:"step"`
	Steps   []StepTime    `json:"steps"`
	Error   string        `json:"error,omitempty"`
	// Warning is what a switchover that is done did not do: its reverse
	// replication, when that failed after the promotion (the switchover
	// goes on: the old primary is fenced, the new one must serve).
	Warning string `json:"warning,omitempty"`
	// Recovered is set when a restarted handoff finished or rolled back
	// the switchover.
	Recovered bool `json:"recovered,omitempty"`
}

// StepTime is when a step began, relative to the start.
type StepTime struct {
	Step Step          `json:"step"`
	At   time.Duration `json:"at_ns"`
}

// Primary is the address the endpoint must point at for the switchover in
// r: the new primary once it is past the point of no return, else the old.
func (r Record) Primary() string {
	if r.Committed() {
		return r.ToAddr
	}
	return r.FromAddr
}

// Names reports whether addr is one of the record's two servers: a
// config whose primary is neither has moved on to another server, and the
// record no longer says where its endpoint points.
func (r Record) Names(addr string) bool { return addr == r.FromAddr || addr == r.ToAddr }

// Settled is where the endpoint stands by the record once it can no longer
// change its mind: the replica from the step that moves the endpoint on,
// the old primary once rolled back. While ok is false the switchover
// may still go either way (a failed promotion rolls back), and whoever
// follows the record from outside must leave its endpoint where it is.
func (r Record) Settled() (addr string, ok bool) {
	switch r.Step {
	case Repointing, Resuming, Done:
		return r.ToAddr, true
	case RolledBack:
		return r.FromAddr, true
	}
	return "", false
}

// Journal keeps records durably; store.Store satisfies it.
type Journal interface {
	Get(ctx context.Context, kind, key string, v any) (bool, error)
	Put(ctx context.Context, kind, key string, v any) error
}

// JournalKind is the store kind under which records are kept, keyed by the
// database's name.
const JournalKind = "switchover"

// Error is a switchover that did not happen: RolledBack says whether it
// had begun (and was rolled back) or was refused before it began.
type Error struct {
	Step       Step // the step that failed
	RolledBack bool
	Copy       bool // a migrate-on-copy (it is reverted, not rolled back)
	Err        error
}

func (e *Error) Error() string {
	if e.Copy {
		if e.RolledBack {
			return fmt.Sprintf("migrate-on-copy reverted at %s: %v", e.Step, e.Err)
		}
		return fmt.Sprintf("migrate-on-copy refused at %s: %v", e.Step, e.Err)
	}
	if e.RolledBack {
		return fmt.Sprintf("switchover rolled back at %s: %v", e.Step, e.Err)
	}
	return fmt.Sprintf("switchover refused at %s: %v", e.Step, e.Err)
}

func (e *Error) Unwrap() error { return e.Err }
