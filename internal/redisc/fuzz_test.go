package redisc

import (
	"bufio"
	"strings"
	"testing"
)

// FuzzRead: any bytes from a server give a reply or an error, never a
// panic, and never a buffer larger than what was received.
func FuzzRead(f *testing.F) {
	for _, s := range []string{"+OK\r\n", "-ERR x\r\n", ":12\r\n", "$3\r\nabc\r\n", "$-1\r\n", "*2\r\n:1\r\n$1\r\na\r\n", "*-1\r\n", "$536870000\r\n", "*1048576\r\n", "?\r\n", "\r\n", "$2\r\na"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c := &Conn{r: bufio.NewReader(strings.NewReader(string(data)))}
		v, err := c.read()
		if err == nil {
			if s, ok := v.(string); ok && len(s) > len(data) {
				t.Fatalf("a %d-byte string from %d bytes", len(s), len(data))
			}
		}
	})
}
