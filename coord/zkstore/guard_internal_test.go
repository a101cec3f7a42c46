package zkstore

import (
	"encoding/binary"
	"math/rand"
	"testing"
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
