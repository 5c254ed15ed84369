package switchover

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// Defaults and bounds, each with its reason.
const (
	// DefaultDeadline is the whole window in which the app waits: long
	// enough for a caught-up replica (milliseconds of lag) to be fenced,
	// caught up and promoted on a loaded host, short enough that a held
	// request does not time out in a browser.
	DefaultDeadline = 5 * time.Second
	// MaxDeadline caps --deadline: holding an app's traffic longer than
	// this is a maintenance window, not a switchover.
	MaxDeadline = 60 * time.Second
	// rollbackTimeout bounds the rollback itself (unfence, resume), which
	// runs after the deadline has passed.
	rollbackTimeout = 15 * time.Second
	// finishTimeout bounds the steps after the point of no return.
	finishTimeout = 30 * time.Second
)

// Options are one switchover's settings.
type Options struct {
	Name     string        // the database's name (the journal's key)
	From, To string        // URLs of the old primary and the replica, for the record (Reopen)
	Deadline time.Duration // 0: DefaultDeadline
	// Endpoint and Gate may be nil (no endpoint: the app's own config
	// decides where it connects; no gateway: nothing to hold).
	Endpoint Endpoint
	Gate     Gate
	Journal  Journal
	Log      *slog.Logger
	// OnStep, when set, is called as each step is recorded, before it
	// acts (tests stop the engine there; status shows it live).
	OnStep func(Record)
	// Reverse, on a logical switchover, makes the old primary a
	// subscriber of the new one after the promotion (reverse.go).
	Reverse bool
	// Node is the fleet node that runs the switchover, kept in the record:
	// another node recovers it only once that node is lost.
	Node string
}

// Run switches the endpoint from pair's primary to its replica. It returns
// the final record; an *Error says whether the switchover was refused
// (nothing changed) or rolled back.
func Run(ctx context.Context, pair Pair, o Options) (Record, error) {
	if o.Deadline == 0 {
		o.Deadline = DefaultDeadline
	}
	if o.Deadline < 0 || o.Deadline > MaxDeadline {
		return Record{}, &Error{Step: Checking, Err: fmt.Errorf("deadline %v: must be more than 0 and at most %v", o.Deadline, MaxDeadline)}
	}
	if o.Journal != nil && (o.From == "" || o.To == "") {
		return Record{}, &Error{Step: Checking, Err: errors.New("the servers' URLs are needed in the record, to recover after a crash")}
	}
	if o.Log == nil {
		o.Log = defaultLog()
	}
	from, to := pair.Addrs()
	r := &run{pair: pair, o: o, rec: Record{Name: o.Name, Node: o.Node, Kind: pair.Kind(), From: o.From, To: o.To,
		FromAddr: from, ToAddr: to, Deadline: o.Deadline, Started: time.Now()}}
	if pp, ok := pair.(*pgPair); ok && pp.logical {
		r.rec.Subscription, r.rec.Slot = pp.sub, pp.slot
	}
	r.rec.Reverse = o.Reverse
	if o.Reverse {
		if err := checkReverse(ctx, pair); err != nil {
			return r.rec, &Error{Step: Checking, Err: err}
		}
	}
	if err := r.check(ctx); err != nil {
		return r.rec, &Error{Step: Checking, Err: err}
	}
	return r.switchover(ctx)
}

type run struct {
	pair    Pair
	o       Options
	rec     Record
	release func() // the gate's; nil when not held
	paused  bool
	fenced  bool
}

func defaultLog() *slog.Logger { return slog.New(slog.DiscardHandler) }

// record writes the step to the journal before it is acted on.
func (r *run) record(ctx context.Context, s Step) error {
	r.rec.Step = s
	r.rec.Steps = append(r.rec.Steps, StepTime{Step: s, At: time.Since(r.rec.Started)})
	r.o.Log.Info("switchover step", "db", r.o.Name, "step", string(s), "at", time.Since(r.rec.Started).Round(time.Millisecond))
	if r.o.Journal != nil {
		// The write must land even when the deadline has passed: a record
		// of a rollback matters most then.
		wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), rollbackTimeout)
		defer cancel()
		if err := r.o.Journal.Put(wctx, JournalKind, r.o.Name, r.rec); err != nil {
			return fmt.Errorf("record step %s: %w", s, err)
		}
	}
	if r.o.OnStep != nil {
		r.o.OnStep(r.rec)
	}
	return nil
}

// check runs the preconditions, before the deadline starts: no switchover
// is in progress, the replica replicates from the primary, no transaction
// has been open for long, and the replica catches up with the primary's
// current position within a quarter of the deadline.
func (r *run) check(ctx context.Context) error {
	if r.o.Journal != nil {
		var prev Record
		ok, err := r.o.Journal.Get(ctx, JournalKind, r.o.Name, &prev)
		if err != nil {
			return fmt.Errorf("read the journal: %w", err)
		}
		if ok && !prev.Step.Final() {
			return fmt.Errorf("a switchover of %s is still at step %s (since %s); it is finished or rolled back when handoff restarts", r.o.Name, prev.Step, prev.Started.Format(time.RFC3339))
		}
	}
	quarter := r.o.Deadline / 4
	if err := r.pair.Check(ctx, quarter); err != nil {
		return err
	}
	pos, err := r.pair.Position(ctx)
	if err != nil {
		return err
	}
	cctx, cancel := context.WithTimeout(ctx, quarter)
	defer cancel()
	if err := r.pair.CaughtUp(cctx, pos); err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("the replica %s is behind: it did not apply the primary's position %s within %v (a quarter of the deadline)", r.rec.ToAddr, pos, quarter)
		}
		return err
	}
	return nil
}

func (r *run) switchover(ctx context.Context) (Record, error) {
	if err := r.record(ctx, Holding); err != nil {
		return r.rec, &Error{Step: Checking, Err: err}
	}
	dctx, cancel := context.WithTimeoutCause(ctx, r.o.Deadline, fmt.Errorf("deadline %v passed", r.o.Deadline))
	defer cancel()
	if err := r.cutover(dctx); err != nil {
		step := r.rec.Step
		if cause := context.Cause(dctx); cause != nil && dctx.Err() != nil && errors.Is(err, context.DeadlineExceeded) {
			err = fmt.Errorf("%w (%w)", cause, err)
		}
		if rerr := r.rollback(ctx, err, nil); rerr != nil {
			return r.rec, &Error{Step: step, RolledBack: true, Err: errors.Join(err, rerr)}
		}
		return r.rec, &Error{Step: step, RolledBack: true, Err: err}
	}
	return r.rec, r.finish(ctx)
}

// cutover runs the steps up to the point of no return under dctx.
func (r *run) cutover(dctx context.Context) error {
	if r.o.Gate != nil {
		release, err := r.o.Gate.Hold(dctx)
		if err != nil {
			return fmt.Errorf("hold HTTP requests: %w", err)
		}
		r.release = release
	}
	if r.o.Endpoint != nil {
		r.paused = true // Pause may hold some sessions before it fails
		if err := r.o.Endpoint.Pause(dctx); err != nil {
			return fmt.Errorf("pause the database endpoint: %w", err)
		}
	}
	if err := r.record(dctx, Fencing); err != nil {
		return err
	}
	r.fenced = true // recorded first: a fence that half-happened is undone too
	if err := r.pair.Fence(dctx); err != nil {
		return fmt.Errorf("fence the old primary: %w", err)
	}
	if err := r.record(dctx, CatchingUp); err != nil {
		return err
	}
	if err := catchUp(dctx, r.pair); err != nil {
		return err
	}
	if err := r.pair.Prepare(dctx); err != nil {
		return fmt.Errorf("prepare the replica: %w", err)
	}
	// Promotion must fit in what is left of the deadline; past it the
	// switchover cannot be undone, so do not start it at the last moment.
	if dl, ok := dctx.Deadline(); ok && time.Until(dl) < r.o.Deadline/10 {
		return fmt.Errorf("%w: %v left, too little to promote", context.DeadlineExceeded, time.Until(dl).Round(time.Millisecond))
	}
	return dctx.Err()
}

// finish runs the steps from the point of no return on; they are not
// bound by the deadline (a promoted replica is the primary now).
func (r *run) finish(ctx context.Context) error {
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), finishTimeout)
	defer cancel()
	if err := r.record(fctx, Promoting); err != nil {
		// Not recorded, not acted on: roll back.
		if rerr := r.rollback(ctx, err, nil); rerr != nil {
			err = errors.Join(err, rerr)
		}
		return &Error{Step: Promoting, RolledBack: true, Err: err}
	}
	err := completeCommitted(fctx, r.pair, r.o.Endpoint, r.o.Reverse, r.record)
	var np notPromoted
	if errors.As(err, &np) {
		// The promotion failed and the replica is verifiably still a
		// replica: the old primary is still the only one, so roll back.
		if rerr := r.rollback(ctx, err, nil); rerr != nil {
			err = errors.Join(err, rerr)
		}
		return &Error{Step: Promoting, RolledBack: true, Err: err}
	}
	var nwb noWayBack
	if errors.As(err, &nwb) {
		r.rec.Warning, err = nwb.Error(), nil
		r.o.Log.Warn("switchover done without its way back", "database", r.rec.Name, "error", nwb.err)
	}
	r.resumeAll()
	if err != nil {
		r.rec.Error = err.Error()
		return fmt.Errorf("switchover past promotion: %w", err)
	}
	return r.record(fctx, Done)
}

// completeCommitted promotes, repoints and records; shared by Run and
// Recover, so that resuming after a crash is the same code path.
func completeCommitted(ctx context.Context, pair Pair, ep Endpoint, reverse bool, record func(context.Context, Step) error) (way error) {
	if err := pair.Promote(ctx); err != nil {
		// What decides is where the replica is: promoted after all (an
		// error after the fact) → go on; still a replica → roll back;
		// unknown → stop here, the old primary fenced (writes fail, none
		// is lost) and the record at promoting, retried at a restart.
		err = fmt.Errorf("promote the replica: %w", err)
		ok, perr := pair.Promoted(ctx)
		switch {
		case perr != nil:
			return errors.Join(err, perr)
		case !ok:
			return notPromoted{err}
		}
	}
	if reverse {
		// Before the endpoint moves: nothing writes to the new primary
		// yet, so the reverse slot starts at the switch position and a
		// switch back loses nothing.
		if err := record(ctx, Reversing); err != nil {
			return err
		}
		if err := pair.(reverser).Reverse(ctx); err != nil {
			// The way back failed, not the switchover: the replica is the
			// primary now, and the endpoint must go to it (the old one is
			// fenced). Said, not fatal.
			way = noWayBack{fmt.Errorf("reverse replication did not start, so a switch back would not find the old primary caught up: %w", err)}
		}
	}
	if err := record(ctx, Repointing); err != nil {
		return err
	}
	if ep != nil {
		_, to := pair.Addrs()
		if err := ep.Repoint(to); err != nil {
			return fmt.Errorf("point the endpoint at %s: %w", to, err)
		}
	}
	if err := record(ctx, Resuming); err != nil {
		return err
	}
	return way
}

// noWayBack is completeCommitted's report of a switchover done but for
// its reverse replication: the caller records it as the record's Warning
// and goes on to Done.
type noWayBack struct{ err error }

func (e noWayBack) Error() string { return e.err.Error() }
func (e noWayBack) Unwrap() error { return e.err }

// notPromoted is a failed promotion that left the replica a replica.
type notPromoted struct{ err error }

func (e notPromoted) Error() string { return e.err.Error() }
func (e notPromoted) Unwrap() error { return e.err }

func (r *run) resumeAll() {
	if r.paused && r.o.Endpoint != nil {
		r.o.Endpoint.Resume()
		r.paused = false
	}
	if r.release != nil {
		r.release()
		r.release = nil
	}
}

// rollback undoes a switchover that did not reach the point of no return:
// the old primary writable, the endpoint (never moved) resumed, HTTP
// resumed, then `then` (when set; a migrate-on-copy's read-only off: the old
// primary is writable before writes are admitted, so none fails).
func (r *run) rollback(ctx context.Context, cause error, then func(context.Context) error) error {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), rollbackTimeout)
	defer cancel()
	r.rec.Error = cause.Error()
	var errs []error
	if err := r.record(rctx, RollingBack); err != nil {
		errs = append(errs, err)
	}
	if r.fenced {
		if err := r.pair.Unfence(rctx); err != nil {
			errs = append(errs, fmt.Errorf("unfence the old primary: %w", err))
		}
	}
	// The endpoint was never repointed before the point of no return;
	// resuming lets the held transactions go on against the old primary.
	r.resumeAll()
	if then != nil {
		if err := then(rctx); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) == 0 {
		if err := r.record(rctx, RolledBack); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Recover finishes or rolls back a switchover that a killed handoff left
// unfinished, from its record: past the point of no return it promotes
// (again: Promote is idempotent) and repoints; before it, it unfences the
// old primary. ep is the endpoint as the restarted handoff made it, pointing
// at rec.Primary() as of the record; it may be nil. A final record is
// returned as it is.
func Recover(ctx context.Context, rec Record, pair Pair, ep Endpoint, j Journal) (Record, error) {
	if rec.Step.Final() {
		return rec, nil
	}
	if rec.Migrate != "" {
		return rec, fmt.Errorf("the record of %s is a migrate-on-copy: RecoverCopy recovers it", rec.Name)
	}
	if rec.Reverse {
		if _, ok := pair.(reverser); !ok {
			return rec, fmt.Errorf("the switchover of %s asked for reverse replication, which %s cannot do", rec.Name, pair.Kind())
		}
	}
	started := rec.Started
	record := func(ctx context.Context, s Step) error {
		rec.Step = s
		rec.Recovered = true
		rec.Steps = append(rec.Steps, StepTime{Step: s, At: time.Since(started)})
		if j == nil {
			return nil
		}
		if err := j.Put(ctx, JournalKind, rec.Name, rec); err != nil {
			return fmt.Errorf("record step %s: %w", s, err)
		}
		return nil
	}
	if rec.Step.committed() {
		fctx, cancel := context.WithTimeout(ctx, finishTimeout)
		defer cancel()
		err := completeCommitted(fctx, pair, ep, rec.Reverse, record)
		var nwb noWayBack
		if errors.As(err, &nwb) {
			rec.Warning, err = nwb.Error(), nil
		}
		var np notPromoted
		if !errors.As(err, &np) {
			if err != nil {
				return rec, fmt.Errorf("finish the switchover of %s: %w", rec.Name, err)
			}
			return rec, record(fctx, Done)
		}
		rec.Error = err.Error() // still a replica: roll back instead
	}
	rctx, cancel := context.WithTimeout(ctx, rollbackTimeout)
	defer cancel()
	if rec.Error == "" {
		rec.Error = fmt.Sprintf("handoff stopped at step %s", rec.Step)
	}
	if err := record(rctx, RollingBack); err != nil {
		return rec, err
	}
	// Unfence even if the record says the fence had not begun: Unfence is
	// idempotent, and a fence half-applied by a killed handoff is undone.
	if err := pair.Unfence(rctx); err != nil {
		return rec, fmt.Errorf("roll back the switchover of %s: unfence the old primary: %w", rec.Name, err)
	}
	if ep != nil {
		from, _ := pair.Addrs()
		if err := ep.Repoint(from); err != nil {
			return rec, fmt.Errorf("roll back the switchover of %s: point the endpoint at %s: %w", rec.Name, from, err)
		}
	}
	return rec, record(rctx, RolledBack)
}
