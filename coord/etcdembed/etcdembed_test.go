package etcdembed_test

import (
	"errors"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coordkit/coord/coord/etcdembed"
)

// TestOneServerPerDir: a second server on a directory in use fails at once,
// naming the holder, and the directory is free again after Close.
func TestOneServerPerDir(t *testing.T) {
	dir := t.TempDir()
	first, err := etcdembed.Start(dir, etcdembed.Options{})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	second, err := etcdembed.Start(dir, etcdembed.Options{})
	if err == nil {
		second.Close()
		first.Close()
		t.Fatal("two servers on one directory")
	}
	if !errors.Is(err, etcdembed.ErrInUse) || !strings.Contains(err.Error(), "pid "+strconv.Itoa(os.Getpid())) {
		t.Fatalf("second Start: %v, want ErrInUse naming pid %d", err, os.Getpid())
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("the refusal took %v", d) // it must not wait for the first
	}
	first.Close()
	again, err := etcdembed.Start(dir, etcdembed.Options{})
	if err != nil {
		t.Fatalf("Start after Close: %v", err)
	}
	again.Close()
}
