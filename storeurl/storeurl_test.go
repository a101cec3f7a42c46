package storeurl

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/coordkit/coord/coord/etcdstore"
)

// "embedded:" needs Options.Embedded: without it the URL is refused before
// anything starts; with it, the hook gets the data directory and its stop
// function runs on Close.
func TestEmbeddedNeedsItsHook(t *testing.T) {
	ctx := context.Background()
	if _, err := Dial(ctx, "embedded:/nowhere", Options{}); !errors.Is(err, ErrBadURL) {
		t.Fatalf("no hook: got %v, want ErrBadURL", err)
	}
	var gotDir string
	stopped := 0
	c, err := Dial(ctx, "embedded:/data", Options{Embedded: func(dir string) (etcdstore.Config, func(), error) {
		gotDir = dir
		return etcdstore.Config{Endpoints: []string{"http://127.0.0.1:1"}}, func() { stopped++ }, nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	if gotDir != "/data/etcd" || c.Kind != "embedded" || c.URL != "embedded:/data" {
		t.Fatalf("dir %q, kind %q, URL %q", gotDir, c.Kind, c.URL)
	}
	c.Close()
	if stopped != 1 {
		t.Fatalf("stop ran %d times, want 1", stopped)
	}
	boom := errors.New("boom")
	if _, err := Dial(ctx, "embedded", Options{DataDir: "/d", Embedded: func(string) (etcdstore.Config, func(), error) {
		return etcdstore.Config{}, nil, boom
	}}); !errors.Is(err, boom) {
		t.Fatalf("a failing hook: got %v", err)
	}
}

// Options a URL cannot use are refused before anything is dialled, and no
// message repeats a password.
func TestRefusedBeforeDialling(t *testing.T) {
	ctx := context.Background()
	hook := func(string) (etcdstore.Config, func(), error) {
		t.Fatal("the embedded server was started")
		return etcdstore.Config{}, nil, nil
	}
	for _, c := range []struct {
		url string
		opt Options
	}{
		{"etcd://127.0.0.1:1?prefx=coord", Options{}},
		{"consul://127.0.0.1:1?prefix=a&datacenter=x", Options{}},
		{"zk://127.0.0.1:1/chroot?prefix=x", Options{}},
		{"zk://127.0.0.1:1", Options{CAFile: "ca.pem"}},
		{"zk://127.0.0.1:1", Options{Token: "t"}},
		{"etcd://127.0.0.1:1", Options{Token: "t"}},
		{"consul://u:secretpw@127.0.0.1:1", Options{}},
		{"embedded", Options{CertFile: "c.pem", Embedded: hook}},
		{"embedded:/d", Options{InsecureSkipVerify: true, Embedded: hook}},
		{"embedded", Options{Token: "t", Embedded: hook}},
		{"etcd://u:secretpw@127.0.0.1:1?x=1", Options{}},
		{"ftp://u:secretpw@127.0.0.1:1", Options{}},
		{"etcd://u:secretpw@%zz", Options{}},
	} {
		_, err := Dial(ctx, c.url, c.opt)
		if !errors.Is(err, ErrBadURL) {
			t.Errorf("%s %+v: got %v, want ErrBadURL", c.url, c.opt, err)
			continue
		}
		if strings.Contains(err.Error(), "secretpw") {
			t.Errorf("%s: the error shows the password: %v", c.url, err)
		}
	}
	// A read-only caller is refused a directory with no store, and nothing
	// is created there.
	dir := t.TempDir()
	if _, err := Dial(ctx, "embedded:"+dir, Options{MustExist: true, Embedded: hook}); !errors.Is(err, ErrNoStore) {
		t.Fatalf("MustExist on an empty directory: %v", err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Fatalf("the refused dial wrote %v", ents)
	}
	if r := Redact("zk://user:pw@h:1/x"); r != "zk://user:xxxxx@h:1/x" {
		t.Fatalf("Redact: %s", r)
	}
}
