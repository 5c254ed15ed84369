package dbproxy

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"strings"
)

// CredentialsFile returns a Password function that reads path: one
// "user:password" per line (the first colon splits; # starts a comment
// line). The file is read again at each use, so that a rotated password
// is used without a restart; it is checked once here, so that a missing,
// malformed or group- or world-readable file is refused at start.
func CredentialsFile(path string) (func(user string) (string, error), error) {
	if _, err := readCredentials(path); err != nil {
		return nil, err
	}
	return func(user string) (string, error) {
		creds, err := readCredentials(path)
		if err != nil {
			return "", err
		}
		pw, ok := creds[user]
		if !ok {
			return "", fmt.Errorf("credentials file %s has no line for user %q", path, user)
		}
		return pw, nil
	}, nil
}

func readCredentials(path string) (map[string]string, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("credentials file: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("credentials file %s: mode %04o lets others read it; chmod 600 it", path, fi.Mode().Perm())
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("credentials file: %w", err)
	}
	return parseCredentials(path, data)
}

func parseCredentials(path string, data []byte) (map[string]string, error) {
	creds := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimRight(sc.Text(), "\r")
		if strings.TrimSpace(line) == "" || strings.HasPrefix(strings.TrimSpace(line), "#") {
			continue
		}
		user, pw, ok := strings.Cut(line, ":")
		if !ok || user == "" {
			return nil, fmt.Errorf("credentials file %s:%d: want user:password", path, n)
		}
		if _, dup := creds[user]; dup {
			return nil, fmt.Errorf("credentials file %s:%d: user %q given twice", path, n, user)
		}
		creds[user] = pw
	}
	return creds, sc.Err()
}

// TLSConfig builds the TLS to a server for a tls: mode (disable, require,
// verify-full) and an optional CA file; nil for disable.
func TLSConfig(mode, caFile string) (*tls.Config, error) {
	switch mode {
	case "", "disable":
		return nil, nil
	case "require":
		// Encrypted, not verified: libpq's sslmode=require.
		return &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12}, nil
	case "verify-full":
		cfg := &tls.Config{MinVersion: tls.VersionTLS12}
		if caFile != "" {
			pem, err := os.ReadFile(caFile)
			if err != nil {
				return nil, fmt.Errorf("tls_ca_file: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("tls_ca_file %s: no PEM certificate in it", caFile)
			}
			cfg.RootCAs = pool
		}
		return cfg, nil
	}
	return nil, fmt.Errorf("tls: want disable, require or verify-full, got %q", mode)
}

// TLSFor is cfg (nil: plaintext) for a connection to addr (host:port): a
// copy that checks the server's certificate against addr's host, unless
// cfg names another. One rule for the endpoint, its probes and a
// switchover's own connections.
func TLSFor(cfg *tls.Config, addr string) *tls.Config {
	if cfg == nil {
		return nil
	}
	cfg = cfg.Clone()
	if cfg.ServerName == "" {
		cfg.ServerName, _, _ = net.SplitHostPort(addr)
	}
	return cfg
}
