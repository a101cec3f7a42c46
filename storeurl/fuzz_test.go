package storeurl

import (
	"context"
	"net/url"
	"strings"
	"testing"
	"time"
)

// FuzzDial: any URL is resolved or refused at once (Dial connects to
// nothing), and no error repeats a password the URL held.
func FuzzDial(f *testing.F) {
	for _, s := range []string{"zk://u:pw@h:1/x", "etcd://h:1?prefix=a", "consul://h:1?dc=x", "embedded:/d", "ftp://h", "etcd://u:pw@%zz", "etcd://u:pw@h:1?x=1", "zk://"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		start := time.Now()
		c, err := Dial(context.Background(), raw, Options{})
		if d := time.Since(start); d > 5*time.Second {
			t.Fatalf("Dial(%q) took %v", raw, d)
		}
		if err == nil {
			if c.open == nil && c.Kind != "embedded" {
				t.Fatalf("Dial(%q) resolved to nothing", raw)
			}
			return
		}
		if u, perr := url.Parse(raw); perr == nil && u.User != nil {
			if pw, ok := u.User.Password(); ok && len(pw) >= 4 && strings.Contains(err.Error(), pw) && !strings.Contains(strings.Replace(raw, pw, "", 1), pw) {
				t.Fatalf("the error shows the password %q: %v", pw, err)
			}
		}
	})
}
