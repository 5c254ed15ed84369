package loadgen

import (
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"
)

// StatusError is a response whose status counts as a failure (5xx).
type StatusError struct{ Code int }

func (e *StatusError) Error() string { return fmt.Sprintf("status %d", e.Code) }

// MismatchError is a response that arrived whole but said the wrong thing:
// a wrong upload hash, a wrong echo, a stream cut short.
type MismatchError struct{ Msg string }

func (e *MismatchError) Error() string { return e.Msg }

// opError names the step of a request that failed ("read response").
type opError struct {
	op  string
	err error
}

func (e *opError) Error() string { return e.op + ": " + e.err.Error() }
func (e *opError) Unwrap() error { return e.err }

func wrap(op string, err error) error { return &opError{op, err} }

// dropped reports whether err means the server closed the connection: EOF
// or a reset where a response (or the rest of one) was due.
func dropped(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) ||
		errors.Is(err, syscall.ECONNABORTED)
}

// describe renders err without the addresses and ports that net errors
// carry, so that a thousand resets are one line of the error sample.
func describe(err error) string {
	var oe *opError
	if !errors.As(err, &oe) {
		return err.Error()
	}
	if cause := cause(oe.err); cause != "" {
		return oe.op + ": " + cause
	}
	return oe.Error()
}

func cause(err error) string {
	switch {
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "unexpected EOF"
	case errors.Is(err, io.EOF):
		return "EOF"
	case errors.Is(err, syscall.ECONNRESET):
		return "connection reset by peer"
	case errors.Is(err, syscall.EPIPE):
		return "broken pipe"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, os.ErrDeadlineExceeded):
		return "timeout"
	}
	return ""
}
