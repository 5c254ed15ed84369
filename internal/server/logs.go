package server

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/handoff-dev/handoff/internal/gateway"
)

// logPoll is how often a followed log is checked for new lines.
const logPoll = 200 * time.Millisecond

// Logs writes the last lines of each of the app's instance logs, each line
// prefixed with its instance, then with follow the lines they append.
func (s *Server) Logs(ctx context.Context, w io.Writer, app string, lines int, follow bool) error {
	if s.cfg.Apps.Get(app) == nil {
		return &gateway.UnknownAppError{App: app}
	}
	offsets := map[string]int64{}
	files, err := s.supervisor().Logs(app)
	if err != nil {
		return err
	}
	byLastWrite(files)
	for _, f := range files {
		end, err := tail(w, f, lines)
		if err != nil {
			return err
		}
		offsets[f] = end
	}
	for follow {
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(logPoll):
		}
		files, err := s.supervisor().Logs(app)
		if err != nil {
			return err
		}
		for _, f := range files {
			end, err := copyFrom(w, f, offsets[f])
			if err != nil {
				return err
			}
			offsets[f] = end
		}
	}
	return nil
}

func instanceOf(path string) string { return strings.TrimSuffix(filepath.Base(path), ".log") }

// tail writes the last n lines of a log and returns where it ends.
func tail(w io.Writer, path string, n int) (int64, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("read log: %w", err)
	}
	end := int64(len(data))
	if i := bytes.LastIndexByte(data, '\n'); i >= 0 {
		data, end = data[:i+1], int64(i+1) // a partial last line waits for its end
	} else {
		return 0, nil
	}
	all := bytes.SplitAfter(data, []byte("\n"))
	all = all[:len(all)-1] // SplitAfter leaves an empty tail
	if len(all) > n {
		all = all[len(all)-n:]
	}
	for _, line := range all {
		if _, err := fmt.Fprintf(w, "%s | %s", instanceOf(path), line); err != nil {
			return end, err
		}
	}
	return end, nil
}

// copyFrom writes a log's complete lines after offset and returns the new offset.
func copyFrom(w io.Writer, path string, offset int64) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return offset, nil // rotated or removed: nothing to follow
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.Size() < offset {
		offset = 0 // truncated (copytruncate rotation): start over
	}
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		return offset, nil
	}
	r := bufio.NewReader(f)
	for {
		line, err := r.ReadBytes('\n')
		if err != nil {
			return offset, nil // EOF, or a line not yet complete
		}
		offset += int64(len(line))
		if _, err := fmt.Fprintf(w, "%s | %s", instanceOf(path), line); err != nil {
			return offset, err
		}
	}
}

// byLastWrite orders log files by when they were last written, oldest
// first: the logs of stopped releases come before the running ones', and
// the newest lines are at the bottom, where a terminal shows them.
func byLastWrite(files []string) {
	mod := map[string]time.Time{}
	for _, f := range files {
		if fi, err := os.Stat(f); err == nil {
			mod[f] = fi.ModTime()
		}
	}
	sort.SliceStable(files, func(i, j int) bool { return mod[files[i]].Before(mod[files[j]]) })
}
