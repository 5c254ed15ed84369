package testdb

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// TLS for the temp servers: one certificate authority per test process
// signs a certificate for each server, valid for 127.0.0.1 and localhost,
// so that a client checks it the way it checks a real one (verify-full).

// TLSFiles are a server's certificate and key and the CA that signed it,
// as PEM files.
type TLSFiles struct {
	CA, Cert, Key string
}

type authority struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
	err  error
}

var (
	testCA     authority
	testCAOnce sync.Once
)

// CAPool is the certificate pool of the CA that signs every temp server's
// certificate.
func CAPool(t testing.TB) *x509.CertPool {
	t.Helper()
	ca := loadCA(t)
	pool := x509.NewCertPool()
	pool.AddCert(ca.cert)
	return pool
}

func loadCA(t testing.TB) *authority {
	t.Helper()
	testCAOnce.Do(func() {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			testCA.err = err
			return
		}
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "handoff test CA"},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
			IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
		if err != nil {
			testCA.err = err
			return
		}
		testCA.cert, _ = x509.ParseCertificate(der)
		testCA.key = key
		testCA.pem = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	})
	if testCA.err != nil {
		t.Fatalf("test CA: %v", testCA.err)
	}
	return &testCA
}

// writeTLSFiles writes a new server certificate, its key (mode 0600) and
// the CA into dir, owned by owner when running as root (the servers read
// them as their own user and refuse a key others can read).
func writeTLSFiles(t testing.TB, dir, owner string) TLSFiles {
	t.Helper()
	ca := loadCA(t)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, DNSNames: []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	f := TLSFiles{CA: filepath.Join(dir, "ca.pem"), Cert: filepath.Join(dir, "server.crt"), Key: filepath.Join(dir, "server.key")}
	for path, data := range map[string][]byte{
		f.CA:   ca.pem,
		f.Cert: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		f.Key:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}),
	} {
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		if os.Geteuid() == 0 {
			uid, gid := lookupUser(t, owner)
			if err := os.Chown(path, uid, gid); err != nil {
				t.Fatalf("chown %s: %v", path, err)
			}
		}
	}
	return f
}

// ServeTLS turns TLS on in the running cluster (ssl is reloadable: no
// restart). Plaintext connections are still allowed; pg_stat_ssl tells
// which sessions are encrypted.
func (p *PG) ServeTLS(t testing.TB) TLSFiles {
	t.Helper()
	f := writeTLSFiles(t, filepath.Dir(p.Dir), "postgres")
	p.Exec(t, "postgres", fmt.Sprintf("ALTER SYSTEM SET ssl_cert_file = '%s'", f.Cert))
	p.Exec(t, "postgres", fmt.Sprintf("ALTER SYSTEM SET ssl_key_file = '%s'", f.Key))
	p.Exec(t, "postgres", "ALTER SYSTEM SET ssl = on")
	p.Exec(t, "postgres", "SELECT pg_reload_conf()")
	return f
}

// ServeTLS restarts the server with TLS on and required of every
// connection (require_secure_transport): a plaintext client is refused,
// so a session that works is one that is encrypted. The server's own
// helpers (Exec, DSN) then use TLS too.
func (m *MariaDB) ServeTLS(t testing.TB) TLSFiles {
	t.Helper()
	f := writeTLSFiles(t, filepath.Dir(m.Dir), "mysql")
	m.Stop()
	m.tlsArgs = []string{"--ssl-ca=" + f.CA, "--ssl-cert=" + f.Cert, "--ssl-key=" + f.Key, "--require-secure-transport=ON"}
	m.Start(t)
	return f
}
