package storeurl

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/coordkit/coord/coord"
	"github.com/coordkit/coord/coord/etcdstore"
	"github.com/coordkit/coord/coord/zkstore"
	"github.com/coordkit/coord/internal/testenv"
)

// secret writes content to a file of its own and returns its path.
func secret(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// Passwords and tokens given apart from the URL: ambiguous or misplaced
// ones are refused before dialling, and no error shows one.
func TestSecretsRefused(t *testing.T) {
	ctx := context.Background()
	const pw = "s3cretpw"
	missing := filepath.Join(t.TempDir(), "none")
	for _, c := range []struct {
		url, want string
		opt       Options
	}{
		{"consul://127.0.0.1:1", "a token and a token file", Options{Token: pw, TokenFile: secret(t, pw)}},
		{"zk://u@127.0.0.1:1", "a password and a password file", Options{Password: pw, PasswordFile: secret(t, pw)}},
		{"zk://127.0.0.1:1", "names no user", Options{Password: pw}},
		{"etcd://u:" + pw + "@127.0.0.1:1", "a password in the URL and another", Options{Password: pw}},
		{"consul://127.0.0.1:1", "not a user and password", Options{Password: pw}},
		{"embedded", "the embedded store takes none", Options{PasswordFile: secret(t, pw), Embedded: func(string) (etcdstore.Config, func(), error) { panic("started") }}},
		{"zk://u@127.0.0.1:1", "password file " + missing + ": no such file", Options{PasswordFile: missing}},
		{"zk://u@127.0.0.1:1", "its first line is empty", Options{PasswordFile: secret(t, "\n"+pw)}},
		{"consul://127.0.0.1:1", "token file", Options{TokenFile: secret(t, "")}},
	} {
		_, err := Dial(ctx, c.url, c.opt)
		if !errors.Is(err, ErrBadURL) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v, want ErrBadURL saying %q", c.url, err, c.want)
		}
		if err != nil && strings.Contains(err.Error(), pw) {
			t.Errorf("%s: the error shows the secret: %v", c.url, err)
		}
	}
}

// A ZooKeeper digest password from a file (or Options.Password) reaches the
// server: it reads a node only its digest may read, and a wrong one is
// refused with ErrPermission.
func TestZooKeeperPasswordApart(t *testing.T) {
	addr := testenv.Addr(t, "zk")
	ctx := context.Background()
	ns := fmt.Sprintf("/coordtest/pwfile-%d", time.Now().UnixNano())
	owner, err := zkstore.New(ctx, zkstore.Config{
		Servers: []string{addr}, Chroot: ns,
		Auth: []zkstore.Auth{{Scheme: "digest", Secret: "ops:s3cretpw"}},
		ACL:  zk.DigestACL(zk.PermAll, "ops", "s3cretpw"),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer owner.Close()
	if _, err := owner.Create(ctx, "/private", []byte("x"), coord.Persistent); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		opt  Options
		want error
	}{
		{Options{PasswordFile: secret(t, "s3cretpw\n")}, nil},
		{Options{PasswordFile: secret(t, "s3cretpw\r\nsecond line")}, nil},
		{Options{Password: "s3cretpw"}, nil},
		{Options{Password: "wrong"}, coord.ErrPermission},
	} {
		conn, err := Dial(ctx, "zk://ops@"+addr+ns, c.opt)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(conn.URL, "s3cret") {
			t.Errorf("Conn.URL shows the password: %s", conn.URL)
		}
		s, err := conn.Open(ctx)
		if err != nil {
			t.Fatal(err)
		}
		data, _, err := s.Get(ctx, "/private")
		s.Close()
		switch {
		case c.want == nil && (err != nil || string(data) != "x"):
			t.Errorf("%+v: read %q, %v", c.opt, data, err)
		case c.want != nil && !errors.Is(err, c.want):
			t.Errorf("%+v: %v, want %v", c.opt, err, c.want)
		}
	}
}

// A Consul token from a file (TokenFile, or $CONSUL_HTTP_TOKEN_FILE) is
// the one the ACL-enabled agent checks.
func TestConsulTokenFile(t *testing.T) {
	const token = "6f1d2a8e-1c2b-4b7a-9a55-acl0000test2"
	addr := testenv.ACLAgent(t, token)
	ctx := context.Background()
	var err error
	t.Setenv("CONSUL_HTTP_TOKEN", "")
	open := func(opt Options) error {
		conn, err := Dial(ctx, "consul://"+addr, opt)
		if err != nil {
			return err
		}
		s, err := conn.Open(ctx)
		if err != nil {
			return err
		}
		defer s.Close()
		_, err = s.Create(ctx, "/by-file", nil, coord.Ephemeral)
		return err
	}
	for deadline := time.Now().Add(20 * time.Second); ; {
		err = open(Options{TokenFile: secret(t, token+"\n")})
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond) // ACL bootstrap takes a moment after the leader
	}
	if err != nil {
		t.Fatalf("the token from TokenFile: %v", err)
	}
	t.Setenv("CONSUL_HTTP_TOKEN_FILE", secret(t, "not-the-token"))
	if err := open(Options{}); !errors.Is(err, coord.ErrPermission) {
		t.Fatalf("a wrong token from CONSUL_HTTP_TOKEN_FILE: %v, want ErrPermission", err)
	}
	t.Setenv("CONSUL_HTTP_TOKEN_FILE", secret(t, token))
	if err := open(Options{}); err != nil {
		t.Fatalf("the token from CONSUL_HTTP_TOKEN_FILE: %v", err)
	}
	// The consul command's order: the file before CONSUL_HTTP_TOKEN, and
	// a token given before both.
	t.Setenv("CONSUL_HTTP_TOKEN", "not-the-token")
	if err := open(Options{}); err != nil {
		t.Fatalf("CONSUL_HTTP_TOKEN_FILE beside a wrong CONSUL_HTTP_TOKEN: %v", err)
	}
	t.Setenv("CONSUL_HTTP_TOKEN_FILE", secret(t, "not-the-token"))
	t.Setenv("CONSUL_HTTP_TOKEN", token)
	if err := open(Options{}); !errors.Is(err, coord.ErrPermission) {
		t.Fatalf("a wrong CONSUL_HTTP_TOKEN_FILE beside the right CONSUL_HTTP_TOKEN: %v, want ErrPermission (the file first)", err)
	}
	if err := open(Options{Token: token}); err != nil {
		t.Fatalf("Options.Token beside a wrong CONSUL_HTTP_TOKEN_FILE: %v", err)
	}
}
