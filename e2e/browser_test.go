package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// chromium returns the path of Debian's chromium. Without it the test is
// skipped with how to install it — or fails, when HANDOFF_TEST_BROWSER=1
// says that this machine (CI) must run the browser tests.
func chromium(t *testing.T) string {
	t.Helper()
	for _, p := range []string{os.Getenv("HANDOFF_CHROMIUM"), "/usr/bin/chromium"} {
		if p != "" {
			if _, err := os.Stat(p); err == nil {
				return p
			}
		}
	}
	if p, err := exec.LookPath("chromium"); err == nil {
		return p
	}
	const msg = "the dashboard's browser test needs Debian's chromium: apt-get install -y chromium (or set HANDOFF_CHROMIUM to a chromium binary)"
	if os.Getenv("HANDOFF_TEST_BROWSER") == "1" {
		t.Fatal(msg + "; HANDOFF_TEST_BROWSER=1 makes this a failure")
	}
	t.Skip(msg)
	return ""
}

// newBrowser starts headless chromium with a fresh profile and returns the
// context of its first tab, ended with the test (or after limit).
func newBrowser(t *testing.T, limit time.Duration) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium(t)),
		chromedp.NoSandbox, // root in a container: chromium's sandbox cannot start
		chromedp.DisableGPU,
		chromedp.Flag("disable-background-networking", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelTab := chromedp.NewContext(actx, chromedp.WithLogf(t.Logf))
	ctx, cancelLimit := context.WithTimeout(ctx, limit)
	t.Cleanup(func() { cancelLimit(); cancelTab(); cancelAlloc() })
	if err := chromedp.Do(ctx); err != nil { // starts the browser now, so a broken one fails here
		t.Fatalf("start chromium: %v", err)
	}
	return ctx
}

// screenshots writes a test's screenshots to its temp dir and logs where;
// HANDOFF_SCREENSHOTS_DIR names a directory to keep them in instead (the
// temp dir goes with the test).
type screenshots struct {
	t   *testing.T
	dir string
}

func newScreenshots(t *testing.T) *screenshots {
	dir := os.Getenv("HANDOFF_SCREENSHOTS_DIR")
	if dir == "" {
		return &screenshots{t: t, dir: t.TempDir()}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return &screenshots{t: t, dir: dir}
}

// take saves the tab's viewport as name.png and returns the PNG.
func (s *screenshots) take(ctx context.Context, name string) []byte {
	s.t.Helper()
	png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		s.t.Fatalf("screenshot %s: %v", name, err)
	}
	path := filepath.Join(s.dir, name+".png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		s.t.Fatal(err)
	}
	s.t.Logf("screenshot: %s", path)
	return png
}
