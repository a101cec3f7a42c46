package redisc

import (
	"fmt"
	"hash/crc32"
	"testing"
	"time"

	"github.com/coordkit/coord/internal/testenv"
)

// The slot hash is Codis's: CRC-32 IEEE of the hash tag or the key.
func TestSlotOf(t *testing.T) {
	for key, want := range map[string]int{
		"":        0,
		"a":       int(0xe8b7be43 % 1024), // crc32("a")
		"{a}b":    int(0xe8b7be43 % 1024), // the tag
		"x{a}y{b": int(0xe8b7be43 % 1024),
		"{}a":     int(crc32.ChecksumIEEE([]byte("{}a")) % 1024), // empty tag: the whole key
		"{a":      int(crc32.ChecksumIEEE([]byte("{a")) % 1024),  // no closing brace
	} {
		if got := SlotOf(key, 1024); got != want {
			t.Errorf("SlotOf(%q) = %d, want %d", key, got, want)
		}
	}
}

// SlotKeys counts by SCAN on a plain Redis, exactly.
func TestSlotKeys(t *testing.T) {
	addr := testenv.RedisServer(t, "pw")
	c, err := Dial(addr, "pw", 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	want := map[int]int64{}
	for i := 0; i < 3000; i++ {
		k := fmt.Sprintf("key:%d", i)
		if _, err := c.Do("SET", k, "v"); err != nil {
			t.Fatal(err)
		}
		if s := SlotOf(k, 1024); s < 100 {
			want[s]++
		}
	}
	c.Close()
	slots := map[int]bool{}
	for s := 0; s < 100; s++ {
		slots[s] = true
	}
	var last int64
	got, method, err := SlotKeys(addr, "pw", slots, 1024, 5*time.Second, func(done, total int64) { last = done })
	if err != nil || method != "SCAN" {
		t.Fatalf("SlotKeys: %v, %s", err, method)
	}
	if len(got) != len(want) || last != 3000 {
		t.Fatalf("%d slots with keys, want %d; %d keys scanned", len(got), len(want), last)
	}
	for s, n := range want {
		if got[s] != n {
			t.Fatalf("slot %d: %d keys, want %d", s, got[s], n)
		}
	}
	if _, _, err := SlotKeys(testenv.ClosedPort(t), "", slots, 1024, time.Second, nil); err == nil {
		t.Fatal("a closed port answered")
	}
}
