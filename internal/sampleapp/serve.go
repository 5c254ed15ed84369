package sampleapp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"time"
)

// DefaultDrainTimeout bounds a graceful shutdown unless ServeOptions says
// otherwise: longer than any /slow or /sse a test asks for.
const DefaultDrainTimeout = 30 * time.Second

// ServeOptions describe a sample app process.
type ServeOptions struct {
	Options
	// Listen is the address to listen on (host:port).
	Listen string
	// StartDelay is waited before listening, to play an app that boots slowly.
	StartDelay time.Duration
	// DrainTimeout bounds the graceful shutdown; 0 means DefaultDrainTimeout.
	DrainTimeout time.Duration
	// Logger receives start and stop lines; nil discards them.
	Logger *slog.Logger
}

// ListenAndServe waits StartDelay, listens on Listen and serves until ctx
// ends; see Serve. A ctx that ends during the delay returns nil at once.
func ListenAndServe(ctx context.Context, opts ServeOptions) error {
	if opts.StartDelay > 0 {
		t := time.NewTimer(opts.StartDelay)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			return nil
		}
	}
	ln, err := net.Listen("tcp", opts.Listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	return Serve(ctx, ln, opts)
}

// Serve serves the sample app on ln until ctx ends, then shuts down
// gracefully: it stops accepting, lets in-flight requests and streams
// finish (bounded by DrainTimeout), and closes WebSockets with 1001. It
// returns nil after a clean shutdown. X-Instance defaults to ln's address.
func Serve(ctx context.Context, ln net.Listener, opts ServeOptions) error {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if opts.Instance == "" {
		opts.Instance = ln.Addr().String()
	}
	a := newApp(opts.Options)
	if opts.DB != "" {
		db, err := openStore(opts.DB, opts.Schema)
		if err != nil {
			return err
		}
		defer db.close()
		a.db = db
	}
	srv := &http.Server{
		Handler:           a,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	srv.RegisterOnShutdown(a.shutdown)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	log.Info("sample app listening", "addr", ln.Addr().String(), "release", opts.Release)
	select {
	case err := <-served:
		return fmt.Errorf("serve http: %w", err)
	case <-ctx.Done():
	}
	log.Info("sample app shutting down", "release", opts.Release)
	return shutdown(srv, a, served, opts.DrainTimeout)
}

// shutdown drains srv, then waits for the WebSocket handlers it cannot see.
func shutdown(srv *http.Server, a *app, served <-chan error, timeout time.Duration) error {
	if timeout <= 0 {
		timeout = DefaultDrainTimeout
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	err := srv.Shutdown(ctx)
	if err != nil {
		err = errors.Join(fmt.Errorf("shut down http: %w", err), srv.Close())
	}
	sockets := make(chan struct{})
	go func() { a.sockets.Wait(); close(sockets) }()
	select {
	case <-sockets:
	case <-ctx.Done():
	}
	if serr := <-served; !errors.Is(serr, http.ErrServerClosed) {
		err = errors.Join(err, fmt.Errorf("serve http: %w", serr))
	}
	return err
}
