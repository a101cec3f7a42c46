package storeurl

import (
	"context"
	"errors"
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
