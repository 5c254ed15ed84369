package migrate

import (
	"context"
	"errors"
	"sort"
	"time"

	"github.com/handoff-dev/handoff/internal/evolve"
)

// Phase states shown by Status.
const (
	PhasePending = "pending"
	PhaseRunning = "running"
	PhaseDone    = "done"
	PhaseEdited  = "edited" // applied, and the file's text changed since
)

// MigrationStatus is one migration as `handoff migrate status` shows it.
type MigrationStatus struct {
	Name string `json:"name"`
	// File is empty for a migration the history knows but no directory has.
	File    string        `json:"file"`
	Phases  []PhaseStatus `json:"phases"`
	Pending []Phase       `json:"pending"`
	// Backfill is the backfill's progress once it has started.
	Backfill *evolve.Status `json:"backfill,omitempty"`
}

// PhaseStatus is one phase of a migration.
type PhaseStatus struct {
	Phase      Phase     `json:"phase"`
	State      string    `json:"state"`
	Line       int       `json:"line,omitempty"`
	Checksum   string    `json:"checksum"`
	StartedAt  time.Time `json:"started_at,omitzero"`
	FinishedAt time.Time `json:"finished_at,omitzero"`
	AppliedBy  string    `json:"applied_by,omitempty"`
}

// Status lists every migration with the state of each of its phases, in
// order, followed by migrations the history has and the files do not.
func (m *Migrator) Status(ctx context.Context) ([]MigrationStatus, error) {
	hist, err := m.history(ctx)
	if err != nil {
		return nil, err
	}
	var out []MigrationStatus
	for _, mig := range m.ms {
		s, err := m.status(ctx, mig, hist[mig.Name])
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	var orphans []string
	for name := range hist {
		if m.find(name) == nil {
			orphans = append(orphans, name)
		}
	}
	sort.Strings(orphans)
	for _, name := range orphans {
		s := MigrationStatus{Name: name}
		for _, p := range []Phase{Expand, Backfill, Contract, Rollback} {
			if a := hist[name][p]; a != nil {
				s.Phases = append(s.Phases, appliedStatus(p, a))
			}
		}
		out = append(out, s)
	}
	return out, nil
}

func (m *Migrator) status(ctx context.Context, mig *Migration, hist map[Phase]*applied) (MigrationStatus, error) {
	s := MigrationStatus{Name: mig.Name, File: mig.Path, Pending: []Phase{}}
	for _, p := range Phases {
		sec := mig.Sections[p]
		if sec == nil {
			continue
		}
		ps := PhaseStatus{Phase: p, State: PhasePending, Line: sec.Line, Checksum: sec.Checksum}
		if a := hist[p]; a != nil {
			ps = appliedStatus(p, a)
			ps.Line = sec.Line
			if a.Checksum != sec.Checksum {
				ps.State = PhaseEdited
			}
		}
		if ps.State != PhaseDone {
			s.Pending = append(s.Pending, p)
		}
		s.Phases = append(s.Phases, ps)
	}
	if a := hist[Rollback]; a != nil { // begun and not finished: shown, and it blocks the rest
		s.Phases = append(s.Phases, appliedStatus(Rollback, a))
	}
	if mig.Has(Backfill) {
		b, err := evolve.Get(ctx, m.d, mig.Name)
		switch {
		case err == nil:
			s.Backfill = &b
		case !errors.Is(err, evolve.ErrNotFound):
			return s, err
		}
	}
	return s, nil
}

func appliedStatus(p Phase, a *applied) PhaseStatus {
	return PhaseStatus{Phase: p, State: a.State, Checksum: a.Checksum, StartedAt: a.StartedAt, FinishedAt: a.FinishedAt, AppliedBy: a.AppliedBy}
}
