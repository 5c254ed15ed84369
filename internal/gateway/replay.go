package gateway

import "io"

// replayBody reads a request body while keeping its first bytes, so that a
// request whose instance failed before answering can be sent again to
// another. Bodies longer than the limit stream through and cannot be replayed.
type replayBody struct {
	src   io.Reader
	kept  []byte
	limit int
	over  bool // read past the limit: the kept bytes are not the whole prefix
	pos   int  // on a replay, how much of kept has been re-read
}

func newReplayBody(src io.Reader, limit int) *replayBody {
	return &replayBody{src: src, limit: limit}
}

func (b *replayBody) Read(p []byte) (int, error) {
	if b.pos < len(b.kept) {
		n := copy(p, b.kept[b.pos:])
		b.pos += n
		return n, nil
	}
	n, err := b.src.Read(p)
	if err != nil && err != io.EOF {
		err = &clientBodyError{err}
	}
	if n > 0 && !b.over {
		if len(b.kept)+n <= b.limit {
			b.kept = append(b.kept, p[:n]...)
			b.pos = len(b.kept)
		} else {
			b.over = true
			b.kept = nil
		}
	}
	return n, err
}

// rewind makes the next Read start from the beginning again; it reports
// false when the body is too long to have been kept.
func (b *replayBody) rewind() bool {
	if b.over {
		return false
	}
	b.pos = 0
	return true
}
