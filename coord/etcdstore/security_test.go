package etcdstore_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/coordkit/coord/coord"
	"github.com/coordkit/coord/coord/etcdembed"
	"github.com/coordkit/coord/coord/etcdstore"
	"github.com/coordkit/coord/internal/testenv"
)

// clientTLS trusts the test CA in dir and, with cert, presents the client
// certificate.
func clientTLS(t *testing.T, dir string, cert bool) *tls.Config {
	t.Helper()
	pem, err := os.ReadFile(filepath.Join(dir, "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	tc := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	if cert {
		c, err := tls.LoadX509KeyPair(filepath.Join(dir, "client.pem"), filepath.Join(dir, "client-key.pem"))
		if err != nil {
			t.Fatal(err)
		}
		tc.Certificates = []tls.Certificate{c}
	}
	return tc
}

// TestTLSAndUsers runs against an embedded server that serves TLS only to
// clients with a certificate from its CA, and has authentication on: a
// client without a certificate is refused; etcd's users work through
// Config.Username and Password; a read-only user reads and is refused
// every write with ErrPermission (not ErrUnavailable, which would be
// retried), writing nothing; a wrong password is ErrPermission.
func TestTLSAndUsers(t *testing.T) {
	certs := t.TempDir()
	testenv.WriteCerts(t, certs, "localhost")
	srv, err := etcdembed.Start(t.TempDir(), etcdembed.Options{
		CertFile: filepath.Join(certs, "server.pem"), KeyFile: filepath.Join(certs, "server-key.pem"),
		ClientCAFile: filepath.Join(certs, "ca.pem"),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	withCert := clientTLS(t, certs, true)

	// No client certificate: no store.
	short, cancelShort := context.WithTimeout(ctx, 5*time.Second)
	defer cancelShort()
	if s, err := etcdstore.New(short, etcdstore.Config{Endpoints: srv.Endpoints(), Prefix: "sec", TLS: clientTLS(t, certs, false), DialTimeout: 3 * time.Second}); err == nil {
		s.Close()
		t.Fatal("a client without a certificate got a store")
	}

	// Users: root, and a reader with read on every key.
	admin, err := clientv3.New(clientv3.Config{Endpoints: srv.Endpoints(), TLS: withCert, DialTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	for _, step := range []func() error{
		func() error { _, err := admin.UserAdd(ctx, "root", "rootpw"); return err },
		func() error { _, err := admin.UserGrantRole(ctx, "root", "root"); return err },
		func() error { _, err := admin.RoleAdd(ctx, "reader"); return err },
		func() error {
			_, err := admin.RoleGrantPermission(ctx, "reader", "\x00", "\x00", clientv3.PermissionType(clientv3.PermRead))
			return err
		},
		func() error { _, err := admin.UserAdd(ctx, "reader", "readerpw"); return err },
		func() error { _, err := admin.UserGrantRole(ctx, "reader", "reader"); return err },
		func() error { _, err := admin.AuthEnable(ctx); return err },
	} {
		if err := step(); err != nil {
			t.Fatal(err)
		}
	}

	open := func(user, pw string) (coord.Store, error) {
		return etcdstore.New(ctx, etcdstore.Config{Endpoints: srv.Endpoints(), Prefix: "sec", TLS: withCert, Username: user, Password: pw})
	}
	root, err := open("root", "rootpw")
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	if _, err := root.Create(ctx, "/n", []byte("by root"), coord.Persistent); err != nil {
		t.Fatal(err)
	}
	reader, err := open("reader", "readerpw")
	if err != nil {
		t.Fatal(err)
	}
	defer reader.Close()
	testenv.WritesRefused(t, ctx, reader, root, "/n")
	if s, err := open("reader", "wrong"); !errors.Is(err, coord.ErrPermission) {
		if err == nil {
			s.Close()
		}
		t.Fatalf("a wrong password: %v, want ErrPermission", err)
	}
}
