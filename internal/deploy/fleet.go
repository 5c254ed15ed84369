package deploy

import (
	"context"
	"slices"
)

// SetFleetBlockers makes the contract phase wait for what other nodes of
// a fleet run: fn names each instance elsewhere that runs a release
// without all of the migrations, and each node whose instances cannot be
// known (a lost one). The server of a fleet node sets it; a node alone
// has only its own instances to wait for.
func (d *Deployer) SetFleetBlockers(fn func(ctx context.Context, migrations []string) []string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.fleetBlockers = fn
}

// RunningRelease is a release this node runs of an app that uses the database:
// what another node's contract phase asks about.
type RunningRelease struct {
	App     string `json:"app"`
	Release string `json:"release"`
	// Instances counts its instances and workers here (0 for an app
	// whose targets handoff does not run).
	Instances int `json:"instances,omitempty"`
}

// RunningReleases lists, for every app that uses the database, the
// releases this node's instances and workers run (draining ones
// included: they may still write), or the current release of an app whose
// targets handoff does not run.
func (d *Deployer) RunningReleases(ctx context.Context) ([]RunningRelease, error) {
	var out []RunningRelease
	for _, app := range d.apps {
		if !app.UsesDatabase {
			continue
		}
		if !app.Supervised() {
			rec, err := d.record(ctx, app.Name)
			if err != nil {
				return nil, err
			}
			if rec.Current != nil {
				out = append(out, RunningRelease{App: app.Name, Release: rec.Current.Label})
			}
			continue
		}
		for _, inst := range d.sup.List(app.Name) {
			i := slices.IndexFunc(out, func(r RunningRelease) bool { return r.App == app.Name && r.Release == inst.Release })
			if i < 0 {
				out = append(out, RunningRelease{App: app.Name, Release: inst.Release})
				i = len(out) - 1
			}
			out[i].Instances++
		}
	}
	return out, nil
}

// ReleaseMigrations names the migrations release label of app carries;
// ok is false when this node has no record of the release.
func (d *Deployer) ReleaseMigrations(ctx context.Context, app, label string) (migrations []string, ok bool, err error) {
	var r ReleaseRecord
	ok, err = d.store.Get(ctx, kindRelease, app+"/"+label, &r)
	return r.Migrations, ok, err
}
