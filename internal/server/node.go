package server

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"strings"

	"github.com/handoff-dev/handoff/internal/config"
	"github.com/handoff-dev/handoff/internal/store"
	"github.com/handoff-dev/handoff/internal/supervisor"
)

// kindNode holds this installation's node ID in its state store.
const kindNode = "node"

// nodeRecord is the identity of one installation: created once, kept in
// its store, carried by every instance it starts (HANDOFF_NODE). A
// process is adopted or killed only if its environment carries it, so two
// installations on one host — or a scratch one next to a real one — never
// touch each other's processes.
type nodeRecord struct {
	ID string `json:"id"`
}

// nodeID returns this installation's node ID, creating it on first use.
// A SQLite store belongs to one installation; in a Postgres store shared by
// several, the key names the host and the config file.
//
// An installation from before the ID was stored kept its instances under a
// name derived from the host and the state path: if its store has records
// under that name, the name is kept, so that its instances are adopted.
func nodeID(ctx context.Context, cfg *config.Config, st store.Store) (string, error) {
	host, _ := os.Hostname()
	key := "local"
	if strings.Contains(cfg.State, "://") {
		key = host + ":" + cfg.Path
	}
	var rec nodeRecord
	ok, err := st.Get(ctx, kindNode, key, &rec)
	if err != nil {
		return "", fmt.Errorf("read the node's identity: %w", err)
	}
	if ok && rec.ID != "" {
		// Written again at every start: a store that cannot be written
		// (a read-only file system) is refused now, before any instance
		// is adopted, rather than at the first deploy step.
		if err := st.Put(ctx, kindNode, key, rec); err != nil {
			return "", fmt.Errorf("the state store %s cannot be written: %w", cfg.State, err)
		}
		return rec.ID, nil
	}
	sum := sha256.Sum256([]byte(host + "\x00" + cfg.State))
	rec.ID = hex.EncodeToString(sum[:6])
	if !hasRecordsOf(ctx, st, rec.ID) {
		var b [6]byte
		if _, err := rand.Read(b[:]); err != nil {
			return "", fmt.Errorf("make the node's identity: %w", err)
		}
		rec.ID = hex.EncodeToString(b[:])
	}
	if err := st.Put(ctx, kindNode, key, rec); err != nil {
		return "", fmt.Errorf("write the node's identity: %w", err)
	}
	return rec.ID, nil
}

// hasRecordsOf reports whether the store has instance records of node.
func hasRecordsOf(ctx context.Context, st store.Store, node string) bool {
	docs, err := st.List(ctx, supervisor.KindInstance)
	if err != nil {
		return false
	}
	for _, d := range docs {
		if strings.HasPrefix(d.Key, node+"/") {
			return true
		}
	}
	return false
}
