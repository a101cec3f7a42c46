package main

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

const stream = `{"Action":"start","Package":"p/a"}
{"Action":"run","Package":"p/a","Test":"TestX"}
{"Action":"output","Package":"p/a","Test":"TestX","Output":"=== RUN   TestX\n"}
{"Action":"pass","Package":"p/a","Test":"TestX/sub","Elapsed":0.1}
{"Action":"pass","Package":"p/a","Test":"TestX","Elapsed":0.2}
{"Action":"skip","Package":"p/a","Test":"TestY","Elapsed":0}
{"Action":"pass","Package":"p/a","Elapsed":1.5}
# p/b [build failed]
{"Action":"fail","Package":"p/b","Test":"TestZ","Elapsed":0.3}
{"Action":"fail","Package":"p/b","Elapsed":0.4}
{"Action":"skip","Package":"p/c","Elapsed":0}
`

func TestSummary(t *testing.T) {
	s := &summary{pkgs: map[string]*pkgResult{}}
	var out bytes.Buffer
	if err := s.read(strings.NewReader(stream), &out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "=== RUN   TestX\n") || !strings.Contains(out.String(), "# p/b [build failed]\n") {
		t.Fatalf("output not copied:\n%s", out.String())
	}
	a, b := s.pkgs["p/a"], s.pkgs["p/b"]
	if a.passed != 2 || a.skipped != 1 || a.failed != 0 || a.status != "ok" || a.elapsed != 1.5 {
		t.Errorf("p/a: %+v", a)
	}
	if b.failed != 1 || b.status != "FAIL" || b.failedNames[0] != "TestZ" {
		t.Errorf("p/b: %+v", b)
	}
	if s.ok(false) {
		t.Error("a failed test makes the run fail")
	}
	out.Reset()
	s.print(&out, "ZooKeeper 3.8.4", 61*time.Second)
	for _, want := range []string{"servers: ZooKeeper 3.8.4", "skipped: p/a TestY", "failed: p/b TestZ",
		"wall time: 1m1s", "tests: 2 passed, 1 failed, 1 skipped\n", "no tests"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("summary lacks %q:\n%s", want, out.String())
		}
	}
}

func TestOK(t *testing.T) {
	for _, c := range []struct {
		name, stream string
		ok           bool
	}{
		{"all passed", `{"Action":"pass","Package":"p","Test":"T"}` + "\n" + `{"Action":"pass","Package":"p"}`, true},
		{"no test ran", `{"Action":"skip","Package":"p"}`, false},
		{"a package without result", `{"Action":"pass","Package":"p","Test":"T"}` + "\n" + `{"Action":"pass","Package":"p"}` + "\n" + `{"Action":"output","Package":"q","Output":"panic\n"}`, false},
		{"package failed with tests passed", `{"Action":"pass","Package":"p","Test":"T"}` + "\n" + `{"Action":"fail","Package":"p"}`, false},
	} {
		s := &summary{pkgs: map[string]*pkgResult{}}
		if err := s.read(strings.NewReader(c.stream), &bytes.Buffer{}); err != nil {
			t.Fatal(err)
		}
		if s.ok(false) != c.ok {
			t.Errorf("%s: ok() = %v, want %v", c.name, s.ok(false), c.ok)
		}
		if c.name == "no test ran" && !s.ok(true) {
			t.Error("-allow-none: a run of no test passes")
		}
	}
}
