package h1

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"runtime"
	"testing"
	"time"
)

// tcpPair returns the two ends of a loopback TCP connection.
func tcpPair(t *testing.T) (*net.TCPConn, *net.TCPConn) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := l.Accept()
		accepted <- c
	}()
	a, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	b := <-accepted
	if b == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { a.Close(); b.Close() })
	return a.(*net.TCPConn), b.(*net.TCPConn)
}

// needRawSockets skips where Socket is not built (sock_other.go: NewSocket
// returns nil and connections go through net.Conn).
func needRawSockets(t *testing.T) {
	if runtime.GOOS != "linux" || runtime.GOARCH != "amd64" && runtime.GOARCH != "arm64" {
		t.Skipf("raw sockets are Linux amd64/arm64 only; this is %s/%s", runtime.GOOS, runtime.GOARCH)
	}
}

// TestSocketMatchesConn checks that Socket's reads and writes behave as
// net.Conn's: the bytes, the end of the stream, a deadline, a closed
// connection, and writes larger than the socket's buffers (which wait in
// the poller).
func TestSocketMatchesConn(t *testing.T) {
	needRawSockets(t)
	a, b := tcpPair(t)
	sa, sb := NewSocket(a), NewSocket(b)
	if sa == nil || sb == nil {
		t.Fatal("no Socket for a TCP connection")
	}
	if NewSocket(nil) != nil {
		t.Fatal("a Socket for a connection that is not TCP")
	}

	// Large writes: 8 MiB through buffers of far less, read at the other end.
	big := make([]byte, 8<<20)
	for i := range big {
		big[i] = byte(i * 7)
	}
	head := []byte("head:")
	done := make(chan error, 1)
	go func() {
		if _, err := sa.Write(big); err != nil {
			done <- err
			return
		}
		n, err := sa.Writev(head, big)
		if err == nil && n != len(head)+len(big) {
			err = errors.New("short writev")
		}
		done <- err
	}()
	got := make([]byte, 2*len(big)+len(head))
	if _, err := io.ReadFull(sb, got); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	want := append(append(append([]byte{}, big...), head...), big...)
	if !bytes.Equal(got, want) {
		t.Fatal("the bytes read are not the bytes written")
	}

	// A read deadline: os.ErrDeadlineExceeded, a timeout, as net.Conn's.
	b.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	_, err := sb.Read(make([]byte, 10))
	var ne net.Error
	if !errors.Is(err, os.ErrDeadlineExceeded) || !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("read past the deadline: %v, want a timeout", err)
	}
	b.SetReadDeadline(time.Time{})

	// The peer closes: io.EOF itself, after the bytes it sent.
	sa.Write([]byte("bye"))
	a.Close()
	buf := make([]byte, 10)
	n, err := io.ReadAtLeast(sb, buf, 3)
	if err != nil || string(buf[:n]) != "bye" {
		t.Fatalf("read %q, %v", buf[:n], err)
	}
	if _, err := sb.Read(buf); err != io.EOF {
		t.Fatalf("read at the end: %v, want io.EOF", err)
	}

	// Our own end closed: net.ErrClosed, as net.Conn's.
	b.Close()
	if _, err := sb.Read(buf); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("read of a closed connection: %v, want net.ErrClosed", err)
	}
	if _, err := sb.Write(buf); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("write to a closed connection: %v, want net.ErrClosed", err)
	}
}

// TestSocketConcurrentReads checks that a second reader while one waits
// takes the ordinary path rather than the first one's state: each gets
// bytes, none is lost or read twice.
func TestSocketConcurrentReads(t *testing.T) {
	needRawSockets(t)
	a, b := tcpPair(t)
	sb := NewSocket(b)
	got := make(chan []byte, 2)
	for range 2 {
		go func() {
			buf := make([]byte, 1)
			n, _ := sb.Read(buf)
			got <- buf[:n]
		}()
	}
	time.Sleep(20 * time.Millisecond) // both wait
	a.Write([]byte("x"))
	time.Sleep(20 * time.Millisecond)
	a.Write([]byte("y"))
	one, two := <-got, <-got
	if s := string(one) + string(two); s != "xy" && s != "yx" {
		t.Fatalf("the readers got %q and %q", one, two)
	}
}
