package testenv

import (
	"bytes"
	"encoding/binary"
	"io"
	"testing"
)

// zkGreeting puts the proxy's address in place of the member's own in a
// greeting of the current protocol, leaves the oldest protocol's alone, and
// refuses an address longer than ZooKeeper would send; what follows the
// greeting is left unread.
func TestZKGreeting(t *testing.T) {
	greeting := func(version, sid int64, addr string) []byte {
		b := binary.BigEndian.AppendUint64(nil, uint64(version))
		b = binary.BigEndian.AppendUint64(b, uint64(sid))
		b = binary.BigEndian.AppendUint32(b, uint32(len(addr)))
		return append(b, addr...)
	}
	r := bytes.NewReader(append(greeting(-65535, 2, "127.0.0.1:5001"), "rest"...))
	got, err := zkGreeting(r, "127.0.0.1:40001")
	if err != nil {
		t.Fatal(err)
	}
	if want := greeting(-65535, 2, "127.0.0.1:40001"); !bytes.Equal(got, want) {
		t.Fatalf("got %q, want %q", got, want)
	}
	if rest, _ := io.ReadAll(r); string(rest) != "rest" {
		t.Fatalf("read past the greeting: %q left", rest)
	}
	old := binary.BigEndian.AppendUint64(nil, 3)
	if got, err := zkGreeting(bytes.NewReader(old), "127.0.0.1:40001"); err != nil || !bytes.Equal(got, old) {
		t.Fatalf("the oldest protocol's greeting: %q, %v", got, err)
	}
	huge := binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint64(nil, ^uint64(0)), 1)
	huge = binary.BigEndian.AppendUint32(huge, 1<<20)
	if _, err := zkGreeting(bytes.NewReader(huge), "x:1"); err == nil {
		t.Fatal("a greeting with a 1 MiB address was taken")
	}
	if _, err := zkGreeting(bytes.NewReader(greeting(-65535, 2, "127.0.0.1:5001")[:12]), "x:1"); err == nil {
		t.Fatal("a cut greeting was taken")
	}
}
