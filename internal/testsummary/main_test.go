package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
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
	s := newSummary()
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
		s := newSummary()
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

// TestFailedOutput: the summary repeats what each failed test printed, its
// last lines only, without go test's framing; a test that failed only
// through its subtests, and tests that passed, show nothing; a package cut
// by a panic shows its own lines and those of the test it was running.
func TestFailedOutput(t *testing.T) {
	ev := func(action, pkg, test, out string) string {
		b, _ := json.Marshal(event{Action: action, Package: pkg, Test: test, Output: out})
		return string(b) + "\n"
	}
	var in strings.Builder
	in.WriteString(ev("output", "p/a", "TestA", "=== RUN   TestA\n"))
	in.WriteString(ev("output", "p/a", "TestA/sub", "=== RUN   TestA/sub\n"))
	for i := 0; i < tailLines+5; i++ {
		in.WriteString(ev("output", "p/a", "TestA/sub", fmt.Sprintf("    a_test.go:10: line %d\n", i)))
	}
	in.WriteString(ev("output", "p/a", "TestA/sub", "    --- FAIL: TestA/sub (1.00s)\n"))
	in.WriteString(ev("fail", "p/a", "TestA/sub", ""))
	in.WriteString(ev("output", "p/a", "TestA", "--- FAIL: TestA (1.00s)\n"))
	in.WriteString(ev("fail", "p/a", "TestA", ""))
	in.WriteString(ev("output", "p/a", "TestB", "    b_test.go:3: a passing test's log\n"))
	in.WriteString(ev("pass", "p/a", "TestB", ""))
	in.WriteString(ev("fail", "p/a", "", ""))
	in.WriteString(ev("output", "p/b", "TestC", "    c_test.go:7: waiting\n"))
	in.WriteString(ev("output", "p/b", "", "panic: test timed out after 30m0s\n"))
	in.WriteString(ev("fail", "p/b", "", ""))

	s := newSummary()
	if err := s.read(strings.NewReader(in.String()), io.Discard); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	s.print(&out, "", time.Second)
	got := out.String()
	for _, want := range []string{
		"--- p/a TestA/sub\n    (6 earlier lines left out)\n    a_test.go:10: line 6\n",
		fmt.Sprintf("line %d\n    --- FAIL: TestA/sub", tailLines+4),
		"--- p/b (the package itself)\npanic: test timed out",
		"--- p/b TestC\n    c_test.go:7: waiting\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("summary lacks %q:\n%s", want, got)
		}
	}
	for _, not := range []string{"line 5\n", "--- p/a TestA\n", "a passing test's log", "=== RUN"} {
		if strings.Contains(got, not) {
			t.Errorf("summary shows %q:\n%s", not, got)
		}
	}
	if i, j := strings.Index(got, "==== what the failed tests printed"), strings.Index(got, "==== summary"); i < 0 || i > j {
		t.Errorf("the failed tests' lines come before the summary:\n%s", got)
	}
}
