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

// FuzzZKGreeting: any bytes a peer sends give a greeting that names addr,
// the oldest protocol's unchanged, or an error; never a panic, and never
// more read than the greeting.
func FuzzZKGreeting(f *testing.F) {
	g := binary.BigEndian.AppendUint64(nil, uint64(0xffffffffffff0001))
	g = binary.BigEndian.AppendUint64(g, 2)
	g = binary.BigEndian.AppendUint32(g, 14)
	f.Add(append(g, "127.0.0.1:5001tail"...))
	f.Add(binary.BigEndian.AppendUint64(nil, 7))
	f.Add([]byte{0xff, 0xff})
	f.Fuzz(func(t *testing.T, in []byte) {
		r := bytes.NewReader(in)
		out, err := zkGreeting(r, "127.0.0.1:40001")
		if err != nil {
			return
		}
		read := len(in) - r.Len()
		if int64(binary.BigEndian.Uint64(in[:8])) >= 0 {
			if read != 8 || !bytes.Equal(out, in[:8]) {
				t.Fatalf("the oldest protocol's greeting changed: read %d, out %q", read, out)
			}
			return
		}
		if !bytes.Equal(out[:16], in[:16]) || string(out[20:]) != "127.0.0.1:40001" || binary.BigEndian.Uint32(out[16:20]) != 15 {
			t.Fatalf("greeting %q from %q", out, in[:read])
		}
		if read != 20+int(binary.BigEndian.Uint32(in[16:20])) {
			t.Fatalf("read %d bytes of a greeting of %d", read, 20+binary.BigEndian.Uint32(in[16:20]))
		}
	})
}
