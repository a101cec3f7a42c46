package zkstore

import (
	"encoding/binary"
	"io"
	"math/rand"
	"net"
	"testing"
	"time"

	"github.com/coordkit/coord/internal/resolve"
)

func frame(body []byte) []byte {
	b := make([]byte, 4+len(body))
	binary.BigEndian.PutUint32(b, uint32(len(body)))
	copy(b[4:], body)
	return b
}

// The framer finds every frame and its head however the stream is chunked.
func TestFramerChunks(t *testing.T) {
	var stream []byte
	var want [][]byte
	for i, n := range []int{16, 0, 3, 8, 40, 9} {
		body := make([]byte, n)
		for j := range body {
			body[j] = byte(i*31 + j + 1)
		}
		stream = append(stream, frame(body)...)
		head := make([]byte, 16)
		copy(head, body)
		want = append(want, head)
	}
	rng := rand.New(rand.NewSource(1))
	for trial := 0; trial < 200; trial++ {
		var f framer
		var got [][]byte
		var idx []int
		rest := stream
		for len(rest) > 0 {
			k := 1 + rng.Intn(len(rest))
			if trial == 0 {
				k = 1 // byte by byte
			}
			f.feed(rest[:k], func(index int, head []byte) {
				idx = append(idx, index)
				got = append(got, append([]byte(nil), head...))
			})
			rest = rest[k:]
		}
		if len(got) != len(want) {
			t.Fatalf("trial %d: %d frames, want %d", trial, len(got), len(want))
		}
		for i := range want {
			if idx[i] != i || string(got[i]) != string(want[i]) {
				t.Fatalf("trial %d frame %d: index %d head %x, want %x", trial, i, idx[i], got[i], want[i])
			}
		}
	}
}

// The guard times the session from requests the server answered: a watch
// notification (xid -1) that arrives while a request waits answers nothing,
// and must not move the contact time to that request's send time.
func TestGuardNotificationIsNotReply(t *testing.T) {
	var zxid resolve.Stamp
	g := newGuard(&zxid)
	client, server := net.Pipe()
	defer client.Close()
	defer server.Close()
	c := g.dialer(func(string, string, time.Duration) (net.Conn, error) { return client, nil })
	conn, err := c("tcp", "x", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	go func() { _, _ = io.Copy(io.Discard, server) }()
	reply := func(xid int32, z int64) []byte {
		b := make([]byte, 16)
		binary.BigEndian.PutUint32(b[0:4], uint32(xid))
		binary.BigEndian.PutUint64(b[4:12], uint64(z))
		return frame(b)
	}
	connect := make([]byte, 36)
	binary.BigEndian.PutUint32(connect[4:8], 3000) // timeout, ms
	buf := make([]byte, 256)
	send := func(body []byte) time.Time {
		at := time.Now()
		if _, err := conn.Write(frame(body)); err != nil {
			t.Fatal(err)
		}
		return at
	}
	recv := func(b []byte) {
		go func() { _, _ = server.Write(b) }()
		if _, err := io.ReadFull(conn, buf[:len(b)]); err != nil {
			t.Fatal(err)
		}
	}
	send(make([]byte, 40)) // ConnectRequest
	recv(frame(connect))
	first := send(make([]byte, 12))
	recv(reply(1, 7))
	g.mu.Lock()
	c1 := g.contact
	g.mu.Unlock()
	if c1.Before(first) {
		t.Fatal("an answered request did not move the contact time")
	}
	time.Sleep(20 * time.Millisecond)
	send(make([]byte, 12)) // waits for its answer
	recv(reply(-1, -1))    // a notification meanwhile
	g.mu.Lock()
	c2 := g.contact
	g.mu.Unlock()
	if !c2.Equal(c1) {
		t.Fatalf("a notification moved the contact time by %v", c2.Sub(c1))
	}
	if zxid.Load() != 7 {
		t.Fatalf("largest zxid seen %d, want 7 (a notification's -1 does not count)", zxid.Load())
	}
}
