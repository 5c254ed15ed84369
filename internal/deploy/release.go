package deploy

import (
	"cmp"
	"context"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/handoff-dev/handoff/internal/config"
	"github.com/handoff-dev/handoff/internal/gateway"
)

// kindRelease is the store kind of release records, keyed "app/label".
const kindRelease = "release"

// ReleaseRecord is a release as first deployed: immutable from then on.
type ReleaseRecord struct {
	App     string    `json:"app"`
	Label   string    `json:"label"`
	Dir     string    `json:"dir,omitempty"`
	Targets []string  `json:"targets,omitempty"`
	Created time.Time `json:"created"`
	// Migrations names the migrations the release carries: a contract waits
	// until every instance runs a release that includes it.
	Migrations []string `json:"migrations,omitempty"`
	// ReleaseCommandRan is when the app's release command succeeded for
	// this release; it does not run again for it.
	ReleaseCommandRan time.Time `json:"release_command_ran,omitzero"`
	// ReleaseCommand is the release command while it runs: a handoff
	// process that starts after this one died waits for it to end rather
	// than run a second one beside it.
	ReleaseCommand *RunningCommand `json:"release_command,omitempty"`
}

// RunningCommand names a command's process: its PID and start time (clock
// ticks after boot), and when it started.
type RunningCommand struct {
	PID       int       `json:"pid"`
	StartTime uint64    `json:"start_time"`
	Started   time.Time `json:"started"`
}

// release names and records the release a request deploys. A label already
// recorded must name the same directory: releases are immutable.
func (d *Deployer) release(ctx context.Context, rec *Record, app *config.App, req Request) (Release, error) {
	label, _ := labelOfRequest(req)
	var rel Release
	if req.Release != "" {
		if !app.Supervised() {
			return Release{}, badRequest("app %s has no command: handoff runs no process for it, so deploy it with --target", app.Name)
		}
		dir, err := filepath.Abs(req.Release)
		if err != nil {
			return Release{}, badRequest("release directory %s: %v", req.Release, err)
		}
		if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
			return Release{}, badRequest("release directory %s does not exist or is not a directory", dir)
		}
		rel = Release{Label: label, Dir: dir}
	} else {
		if label == "" {
			label = "r" + strconv.Itoa(rec.Seq+1)
		}
		rel = Release{Label: label, Targets: slices.Clone(req.Targets)}
	}
	if !gateway.ValidRelease(label) {
		return Release{}, badRequest("release label %q: use letters, digits, '.', '_' and '-' (give --label)", label)
	}

	var old ReleaseRecord
	found, err := d.store.Get(ctx, kindRelease, app.Name+"/"+label, &old)
	if err != nil {
		return Release{}, err
	}
	if found && old.Dir != rel.Dir {
		return Release{}, Errorf(ErrConflict, "release %s of %s was deployed from %s; releases are immutable: give this one another --label", label, app.Name, cmp.Or(old.Dir, "external targets"))
	}
	migrations, err := carried(d.migrationDirs(rel))
	if err != nil {
		return Release{}, err
	}
	if !found {
		err = d.store.Put(ctx, kindRelease, app.Name+"/"+label, ReleaseRecord{App: app.Name, Label: label, Dir: rel.Dir, Targets: rel.Targets, Created: now(), Migrations: migrations})
	}
	return rel, err
}

// Releases lists an app's recorded releases, newest first.
func (d *Deployer) Releases(ctx context.Context, app string) ([]ReleaseRecord, error) {
	docs, err := d.store.List(ctx, kindRelease)
	if err != nil {
		return nil, err
	}
	var out []ReleaseRecord
	for _, doc := range docs {
		var r ReleaseRecord
		if err := doc.Decode(&r); err != nil {
			return nil, err
		}
		if app == "" || r.App == app {
			out = append(out, r)
		}
	}
	slices.SortFunc(out, func(a, b ReleaseRecord) int {
		return cmp.Or(cmp.Compare(a.App, b.App), b.Created.Compare(a.Created))
	})
	return out, nil
}

// cleanup removes an app's releases beyond keep_releases, newest kept,
// never the current or previous one, and never one a process still runs
// from. A release directory is deleted only when it lies inside the app's
// releases: directory; one elsewhere is only forgotten.
func (d *Deployer) cleanup(ctx context.Context, app *config.App, rec *Record) {
	rels, err := d.Releases(ctx, app.Name)
	if err != nil {
		d.log.Warn("list releases for cleanup", "app", app.Name, "error", err)
		return
	}
	inUse := map[string]bool{}
	if d.sup != nil {
		inUse = d.sup.InUse()
	}
	kept := 0
	for _, r := range rels {
		keep := kept < app.KeepReleases || inUse[r.Dir] ||
			(rec.Current != nil && rec.Current.Label == r.Label) || (rec.Previous != nil && rec.Previous.Label == r.Label)
		if keep {
			kept++
			continue
		}
		if r.Dir != "" && within(app.Releases, r.Dir) {
			if err := os.RemoveAll(r.Dir); err != nil {
				d.log.Warn("remove release", "app", app.Name, "release", r.Label, "error", err)
				continue
			}
		}
		if err := d.store.Delete(ctx, kindRelease, app.Name+"/"+r.Label); err != nil {
			d.log.Warn("forget release", "app", app.Name, "release", r.Label, "error", err)
			continue
		}
		d.event(app.Name, "release", "", "removed release %s (%s): beyond keep_releases (%d) and unused", r.Label, cmp.Or(r.Dir, "external"), app.KeepReleases)
	}
}

// within reports whether path lies strictly inside dir.
func within(dir, path string) bool {
	rel, err := filepath.Rel(dir, path)
	return err == nil && rel != "." && !strings.HasPrefix(rel, "..") && !filepath.IsAbs(rel)
}

// waitPredecessor waits, up to limit, for the handoff process this one
// took over from (an upgrade) to have finished its requests and exited.
func (d *Deployer) waitPredecessor(ctx context.Context, limit time.Duration) error {
	if d.predecessor == nil {
		return nil
	}
	select {
	case <-d.predecessor:
	case <-time.After(limit):
	case <-ctx.Done():
		return ctx.Err()
	}
	return nil
}

// labelOfRequest is the label a deploy request gives its release: --label,
// else the release directory's name. ok is false for targets without
// --label, which get the next r<N>.
func labelOfRequest(req Request) (string, bool) {
	switch {
	case req.Label != "":
		return req.Label, true
	case req.Release != "":
		if dir, err := filepath.Abs(req.Release); err == nil {
			return filepath.Base(dir), true
		}
	}
	return "", false
}
