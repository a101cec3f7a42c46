package zkstore_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coordkit/coord/coord"
	"github.com/coordkit/coord/coord/zkstore"
	"github.com/coordkit/coord/internal/testenv"
	"github.com/coordkit/coord/storeurl"
)

// TestTLS runs against a server started by scripts/zk.sh with a secure
// client port that needs client certificates: with the CA and a client
// certificate (Config.TLS) the store works, ephemeral nodes included;
// without a client certificate, or without TLS, there is no session.
func TestTLS(t *testing.T) {
	testenv.Addr(t, "zk") // the package is there when a server is
	dir := t.TempDir()
	certs := filepath.Join(dir, "tls")
	testenv.WriteCerts(t, certs, "localhost")
	if out, err := exec.Command("../../scripts/zk.sh", "start", dir).CombinedOutput(); err != nil {
		t.Fatalf("starting a TLS server: %v\n%s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("../../scripts/zk.sh", "stop", dir).Run() })
	raw, err := os.ReadFile(filepath.Join(dir, "zk.secure"))
	if err != nil {
		t.Fatal(err)
	}
	addr := strings.TrimSpace(string(raw))
	pem, err := os.ReadFile(filepath.Join(certs, "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	cert, err := tls.LoadX509KeyPair(filepath.Join(certs, "client.pem"), filepath.Join(certs, "client-key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for name, cfg := range map[string]zkstore.Config{
		"no client certificate": {TLS: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}},
		"no TLS":                {},
		"an unknown CA":         {TLS: &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}},
	} {
		cfg.Servers, cfg.ConnectTimeout = []string{addr}, 3*time.Second
		if s, err := zkstore.New(ctx, cfg); !errors.Is(err, coord.ErrUnavailable) {
			if err == nil {
				s.Close()
			}
			t.Errorf("%s: %v, want ErrUnavailable", name, err)
		}
	}
	s, err := zkstore.New(ctx, zkstore.Config{Servers: []string{addr}, Chroot: "/coordtest/tls",
		TLS: &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Create(ctx, "/tls", []byte("over tls"), coord.Ephemeral); err != nil {
		t.Fatal(err)
	}
	if data, st, err := s.Get(ctx, "/tls"); err != nil || string(data) != "over tls" || !st.Ephemeral {
		t.Fatalf("%q %+v %v", data, st, err)
	}
	// A store URL with TLS options (coordctl's --tls-*) reaches it too.
	conn, err := storeurl.Dial(ctx, "zk://"+addr+"/coordtest/tls", storeurl.Options{
		CAFile: filepath.Join(certs, "ca.pem"), CertFile: filepath.Join(certs, "client.pem"), KeyFile: filepath.Join(certs, "client-key.pem")})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	other, err := conn.Open(ctx)
	if err != nil {
		t.Fatalf("zk:// with TLS options: %v", err)
	}
	defer other.Close()
	if data, _, err := other.Get(ctx, "/tls"); err != nil || string(data) != "over tls" {
		t.Fatalf("through storeurl: %q %v", data, err)
	}
}
