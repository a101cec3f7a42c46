// Package redisc is the few Redis commands the models need (AUTH, SLAVEOF,
// INFO, PING) over RESP. The password is sent in AUTH and nowhere else: it
// never appears in an error.
package redisc

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"
)

// Conn is a connection to one Redis server.
type Conn struct {
	c       net.Conn
	r       *bufio.Reader
	addr    string
	timeout time.Duration
}

// Dial connects to addr and authenticates when passwd is not empty.
func Dial(addr, passwd string, timeout time.Duration) (*Conn, error) {
	c, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return nil, fmt.Errorf("redis %s: %w", addr, err)
	}
	conn := &Conn{c: c, r: bufio.NewReader(c), addr: addr, timeout: timeout}
	if passwd != "" {
		if _, err := conn.Do("AUTH", passwd); err != nil {
			c.Close()
			return nil, fmt.Errorf("redis %s: AUTH: %w", addr, errors.Unwrap(err))
		}
	}
	return conn, nil
}

// Close closes the connection.
func (c *Conn) Close() error { return c.c.Close() }

// ReplyError is an error reply from the server.
type ReplyError string

func (e ReplyError) Error() string { return string(e) }

// Do sends a command and reads its reply: a string, an int64, nil, or a
// []interface{} of those.
func (c *Conn) Do(args ...string) (interface{}, error) {
	_ = c.c.SetDeadline(time.Now().Add(c.timeout))
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	cmd := args[0]
	if _, err := io.WriteString(c.c, b.String()); err != nil {
		return nil, fmt.Errorf("redis %s: %s: %w", c.addr, cmd, err)
	}
	v, err := c.read()
	if err != nil {
		return nil, fmt.Errorf("redis %s: %s: %w", c.addr, cmd, err)
	}
	return v, nil
}

func (c *Conn) read() (interface{}, error) {
	line, err := c.r.ReadString('\n')
	if err != nil {
		return nil, err
	}
	line = strings.TrimSuffix(line, "\r\n")
	if line == "" {
		return nil, errors.New("empty reply")
	}
	switch line[0] {
	case '+':
		return line[1:], nil
	case '-':
		return nil, ReplyError(line[1:])
	case ':':
		return strconv.ParseInt(line[1:], 10, 64)
	case '$':
		n, err := strconv.Atoi(line[1:])
		if err != nil || n < -1 || n > 512<<20 {
			return nil, fmt.Errorf("bad bulk length %q", line)
		}
		if n == -1 {
			return nil, nil
		}
		// Grow with what arrives rather than trust the length: a broken
		// server announcing 512 MiB must not make us allocate it.
		var buf bytes.Buffer
		if _, err := io.CopyN(&buf, c.r, int64(n)+2); err != nil {
			return nil, err
		}
		if !bytes.HasSuffix(buf.Bytes(), []byte("\r\n")) {
			return nil, errors.New("bulk string not ended by CRLF")
		}
		return string(buf.Bytes()[:n]), nil
	case '*':
		n, err := strconv.Atoi(line[1:])
		if err != nil || n < -1 || n > 1<<20 {
			return nil, fmt.Errorf("bad array length %q", line)
		}
		if n == -1 {
			return nil, nil
		}
		out := make([]interface{}, 0, min(n, 1024))
		for i := 0; i < n; i++ {
			v, err := c.read()
			if err != nil {
				return nil, err
			}
			out = append(out, v)
		}
		return out, nil
	}
	return nil, fmt.Errorf("unknown reply %q", line)
}

// SlaveOf makes slave replicate master ("NO ONE" as master stops replication).
func SlaveOf(slave, master, passwd string, timeout time.Duration) error {
	if slave == master {
		return fmt.Errorf("redis %s: cannot be a slave of itself", slave)
	}
	c, err := Dial(slave, passwd, timeout)
	if err != nil {
		return err
	}
	defer c.Close()
	host, port := "NO", "ONE"
	if master != "NO ONE" {
		if host, port, err = net.SplitHostPort(master); err != nil {
			return fmt.Errorf("redis %s: master address %q: %w", slave, master, err)
		}
	}
	_, err = c.Do("SLAVEOF", host, port)
	return err
}

// Info returns the fields of INFO section as a map.
func Info(addr, passwd, section string, timeout time.Duration) (map[string]string, error) {
	c, err := Dial(addr, passwd, timeout)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	v, err := c.Do("INFO", section)
	if err != nil {
		return nil, err
	}
	s, _ := v.(string)
	out := map[string]string{}
	for _, line := range strings.Split(s, "\r\n") {
		if k, val, ok := strings.Cut(line, ":"); ok {
			out[k] = val
		}
	}
	return out, nil
}
