package redisc

import (
	"errors"
	"fmt"
	"hash/crc32"
	"strconv"
	"strings"
	"time"
)

// SlotOf is the Codis slot of a key: the CRC-32 (IEEE) of its hash tag (the
// bytes between the first '{' and the next '}', when not empty) or of the
// whole key, modulo numSlots.
func SlotOf(key string, numSlots int) int {
	h := key
	if i := strings.IndexByte(key, '{'); i >= 0 {
		if j := strings.IndexByte(key[i+1:], '}'); j > 0 {
			h = key[i+1 : i+1+j]
		}
	}
	return int(crc32.ChecksumIEEE([]byte(h)) % uint32(numSlots))
}

// SlotKeys counts the keys of a Redis server in each of the given slots.
// It asks SLOTSINFO where the server has it (Codis's Redis), otherwise it
// SCANs every key and hashes it; method says which. progress, when not nil,
// is called with keys scanned and the database size as the SCAN goes on.
func SlotKeys(addr, passwd string, slots map[int]bool, numSlots int, timeout time.Duration, progress func(done, total int64)) (counts map[int]int64, method string, err error) {
	c, err := Dial(addr, passwd, timeout)
	if err != nil {
		return nil, "", err
	}
	defer c.Close()
	counts = map[int]int64{}
	v, err := c.Do("SLOTSINFO", "0", strconv.Itoa(numSlots))
	var re ReplyError
	switch {
	case err == nil:
		rows, ok := v.([]interface{})
		if !ok {
			return nil, "", fmt.Errorf("redis %s: SLOTSINFO: unexpected reply %T", addr, v)
		}
		for _, r := range rows {
			pair, ok := r.([]interface{})
			if !ok || len(pair) != 2 {
				return nil, "", fmt.Errorf("redis %s: SLOTSINFO: unexpected row %v", addr, r)
			}
			slot, ok1 := pair[0].(int64)
			n, ok2 := pair[1].(int64)
			if !ok1 || !ok2 {
				return nil, "", fmt.Errorf("redis %s: SLOTSINFO: unexpected row %v", addr, r)
			}
			if slots[int(slot)] && n > 0 {
				counts[int(slot)] = n
			}
		}
		return counts, "SLOTSINFO", nil
	case errors.As(err, &re) && strings.Contains(strings.ToLower(string(re)), "unknown command"):
		// A plain Redis: scan and hash.
	default:
		return nil, "", err
	}
	total := int64(0)
	if v, err := c.Do("DBSIZE"); err == nil {
		total, _ = v.(int64)
	}
	cursor, done := "0", int64(0)
	for {
		v, err := c.Do("SCAN", cursor, "COUNT", "1000")
		if err != nil {
			return nil, "", err
		}
		parts, ok := v.([]interface{})
		if !ok || len(parts) != 2 {
			return nil, "", fmt.Errorf("redis %s: SCAN: unexpected reply", addr)
		}
		next, _ := parts[0].(string)
		keys, _ := parts[1].([]interface{})
		for _, k := range keys {
			if key, ok := k.(string); ok {
				if s := SlotOf(key, numSlots); slots[s] {
					counts[s]++
				}
			}
		}
		done += int64(len(keys))
		if progress != nil {
			progress(done, total)
		}
		if next == "0" || next == "" {
			return counts, "SCAN", nil
		}
		cursor = next
	}
}
