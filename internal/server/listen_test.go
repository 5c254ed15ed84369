package server

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// socket: pointed at a file that is not a socket (a typo naming the
// config, the state store or a token) is refused and the file kept; a
// stale socket is replaced.
func TestControlSocketRemovesOnlyASocket(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "handoff.yaml")
	if err := os.WriteFile(path, []byte("precious"), 0o644); err != nil {
		t.Fatal(err)
	}
	if l, err := listenSocket(path); err == nil || !strings.Contains(err.Error(), "not a socket") {
		if l != nil {
			l.Close()
		}
		t.Fatalf("want a refusal naming the file: %v", err)
	}
	if b, _ := os.ReadFile(path); string(b) != "precious" {
		t.Fatalf("the file is kept: %q", b)
	}
	sock := filepath.Join(dir, "handoff.sock")
	l, err := listenSocket(sock)
	if err != nil {
		t.Fatal(err)
	}
	l.(interface{ SetUnlinkOnClose(bool) }).SetUnlinkOnClose(false)
	l.Close() // a stale socket, its server gone
	l, err = listenSocket(sock)
	if err != nil {
		t.Fatalf("a stale socket is replaced: %v", err)
	}
	l.Close()
}
