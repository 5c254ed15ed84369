package dbproxy

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCredentialsFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "creds")
	write := func(mode os.FileMode, text string) {
		if err := os.WriteFile(path, []byte(text), mode); err != nil {
			t.Fatal(err)
		}
		os.Chmod(path, mode)
	}
	write(0o600, "# app users\napp:s3cr:et\n\nreport:\n")
	pw, err := CredentialsFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := pw("app"); err != nil || got != "s3cr:et" {
		t.Fatalf("app: %q %v", got, err)
	}
	if got, err := pw("report"); err != nil || got != "" {
		t.Fatalf("report: %q %v", got, err)
	}
	if _, err := pw("nobody"); err == nil || !strings.Contains(err.Error(), `no line for user "nobody"`) {
		t.Fatalf("unknown user: %v", err)
	}
	write(0o600, "app:new\n") // rotated: read again at use
	if got, _ := pw("app"); got != "new" {
		t.Fatalf("rotated password not read: %q", got)
	}
	for text, want := range map[string]string{
		"no colon here\n": "creds:1: want user:password",
		"a:1\na:2\n":      `creds:2: user "a" given twice`,
		":nouser\n":       "creds:1: want user:password",
	} {
		write(0o600, text)
		if _, err := CredentialsFile(path); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want %s", text, err, want)
		}
	}
	write(0o644, "app:x\n")
	if _, err := CredentialsFile(path); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Errorf("world-readable file: %v", err)
	}
	if _, err := CredentialsFile(filepath.Join(dir, "missing")); err == nil {
		t.Error("missing file accepted")
	}
}
