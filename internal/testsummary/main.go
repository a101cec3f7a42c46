// Command testsummary reads `go test -json` on standard input, prints the
// tests' output as `go test -v` would, and ends with a summary: the servers
// the run used, tests (and subtests) passed, skipped and failed per package,
// the names of those skipped or failed, the last lines each failed test (or
// package) printed, and the wall time. Its last line is
// "tests: N passed, N failed, N skipped". It exits 1 when a test or a
// package failed, or when the input ends without any test having run
// (unless -allow-none).
//
//	go test -json ./... | testsummary -servers "ZooKeeper 3.8.4 on 127.0.0.1:2181" -since 1700000000
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"
)

// event is one line of `go test -json` (see `go doc test2json`).
type event struct {
	Action  string
	Package string
	Test    string
	Output  string
	Elapsed float64
}

type pkgResult struct {
	passed, skipped, failed int
	status                  string // ok, FAIL, or "no tests"
	elapsed                 float64
	skippedNames            []string
	failedNames             []string
}

type summary struct {
	pkgs  map[string]*pkgResult
	order []string
	// tails holds the last lines each running test (or package, under
	// test "") printed; failures, those of the tests and packages that
	// failed, in the order they failed.
	tails    map[testID]*tail
	failures []failure
}

// testID names a test of a package; Test is "" for the package's own output.
type testID struct{ pkg, test string }

// tailLines is how many of its last lines a failed test shows in the summary,
// and maxFailures how many failed tests show theirs.
const (
	tailLines   = 40
	maxFailures = 20
)

// tail keeps the last tailLines lines of one test's output.
type tail struct {
	lines   []string
	dropped int
}

func (t *tail) add(line string) {
	if len(t.lines) == tailLines {
		t.lines = t.lines[1:]
		t.dropped++
	}
	t.lines = append(t.lines, line)
}

// failure is what one failed test printed, without go test's framing.
type failure struct {
	id testID
	tail
}

func newSummary() *summary {
	return &summary{pkgs: map[string]*pkgResult{}, tails: map[testID]*tail{}}
}

// framing reports whether line is go test's own framing rather than what
// the test printed: the === lines, and the result lines of tests that did
// not fail.
func framing(line string) bool {
	l := strings.TrimSpace(line)
	return l == "" || strings.HasPrefix(l, "=== ") || strings.HasPrefix(l, "--- PASS") || strings.HasPrefix(l, "--- SKIP") ||
		l == "PASS" || l == "FAIL" || strings.HasPrefix(l, "ok  \t") || strings.HasPrefix(l, "FAIL\t")
}

// keep records line in the tail of id, unless it is framing.
func (s *summary) keep(id testID, line string) {
	if framing(line) {
		return
	}
	t := s.tails[id]
	if t == nil {
		t = &tail{}
		s.tails[id] = t
	}
	t.add(strings.TrimRight(line, "\n"))
}

// end closes the tail of id: kept when the test failed and printed more
// than its own --- FAIL lines (a test that failed only through its subtests
// has nothing of its own to show).
func (s *summary) end(id testID, failed bool) {
	t := s.tails[id]
	delete(s.tails, id)
	if !failed || t == nil {
		return
	}
	for _, l := range t.lines {
		if !strings.HasPrefix(strings.TrimSpace(l), "--- FAIL") {
			s.failures = append(s.failures, failure{id: id, tail: *t})
			return
		}
	}
}

func (s *summary) pkg(name string) *pkgResult {
	p, ok := s.pkgs[name]
	if !ok {
		p = &pkgResult{}
		s.pkgs[name] = p
		s.order = append(s.order, name)
	}
	return p
}

// add records one event and returns the text to print for it.
func (s *summary) add(e event) string {
	if e.Package == "" {
		return e.Output // build output of no package
	}
	p := s.pkg(e.Package)
	id := testID{e.Package, e.Test}
	switch e.Action {
	case "output":
		s.keep(id, e.Output)
		return e.Output
	case "pass", "skip", "fail":
		s.end(id, e.Action == "fail")
	}
	switch {
	case e.Test != "" && e.Action == "pass":
		p.passed++
	case e.Test != "" && e.Action == "skip":
		p.skipped++
		p.skippedNames = append(p.skippedNames, e.Test)
	case e.Test != "" && e.Action == "fail":
		p.failed++
		p.failedNames = append(p.failedNames, e.Test)
	case e.Test == "" && (e.Action == "pass" || e.Action == "fail" || e.Action == "skip"):
		p.elapsed = e.Elapsed
		p.status = map[string]string{"pass": "ok", "fail": "FAIL", "skip": "no tests"}[e.Action]
	}
	return ""
}

// read consumes the stream, copying output to w; a line that is not JSON
// (a build error printed by go itself) is copied as it is.
func (s *summary) read(r io.Reader, w io.Writer) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		var e event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil || e.Action == "" {
			fmt.Fprintln(w, sc.Text())
			continue
		}
		fmt.Fprint(w, s.add(e))
	}
	return sc.Err()
}

// totals returns the counts over all packages and whether any package failed.
func (s *summary) totals() (passed, failed, skipped int, pkgFailed bool) {
	for _, p := range s.pkgs {
		passed += p.passed
		failed += p.failed
		skipped += p.skipped
		if p.status == "FAIL" {
			pkgFailed = true
		}
	}
	return
}

func (s *summary) print(w io.Writer, servers string, wall time.Duration) {
	// Tests still running when the stream ended (a package's timeout
	// panic names them) show what they printed too.
	cut := make([]testID, 0, len(s.tails))
	for id := range s.tails {
		if s.pkgs[id.pkg].status != "ok" {
			cut = append(cut, id)
		}
	}
	sort.Slice(cut, func(i, j int) bool { return cut[i].pkg+"\x00"+cut[i].test < cut[j].pkg+"\x00"+cut[j].test })
	for _, id := range cut {
		s.end(id, true)
	}
	if len(s.failures) > 0 {
		fmt.Fprintln(w, "\n==== what the failed tests printed (the last lines of each)")
	}
	for i, f := range s.failures {
		if i == maxFailures {
			fmt.Fprintf(w, "(and %d more failed tests: see the output above)\n", len(s.failures)-i)
			break
		}
		name := f.id.test
		if name == "" {
			name = "(the package itself)"
		}
		fmt.Fprintf(w, "--- %s %s\n", f.id.pkg, name)
		if f.dropped > 0 {
			fmt.Fprintf(w, "    (%d earlier lines left out)\n", f.dropped)
		}
		for _, l := range f.lines {
			fmt.Fprintln(w, l)
		}
	}
	fmt.Fprintln(w, "\n==== summary")
	if servers != "" {
		fmt.Fprintln(w, "servers:", servers)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "package\tresult\tpassed\tskipped\tfailed\ttime\t")
	sort.Strings(s.order)
	for _, name := range s.order {
		p := s.pkgs[name]
		status := p.status
		if status == "" {
			status = "FAIL" // no result: the package did not build or the run was cut
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%.1fs\t\n", strings.TrimPrefix(name, "github.com/coordkit/coord/"),
			status, p.passed, p.skipped, p.failed, p.elapsed)
	}
	tw.Flush()
	for _, name := range s.order {
		p := s.pkgs[name]
		for _, t := range p.skippedNames {
			fmt.Fprintf(w, "skipped: %s %s\n", name, t)
		}
		for _, t := range p.failedNames {
			fmt.Fprintf(w, "failed: %s %s\n", name, t)
		}
	}
	passed, failed, skipped, _ := s.totals()
	fmt.Fprintf(w, "wall time: %s\n", wall.Round(time.Second))
	fmt.Fprintf(w, "tests: %d passed, %d failed, %d skipped\n", passed, failed, skipped)
}

// ok reports whether the run passed: tests ran (unless allowNone), none
// failed, every package that reported a result passed and every package
// reported one.
func (s *summary) ok(allowNone bool) bool {
	passed, failed, _, pkgFailed := s.totals()
	if (passed == 0 && !allowNone) || failed > 0 || pkgFailed {
		return false
	}
	for _, p := range s.pkgs {
		if p.status == "" {
			return false
		}
	}
	return true
}

func main() {
	servers := flag.String("servers", "", "the servers the run used, for the summary")
	allowNone := flag.Bool("allow-none", false, "pass when no test ran (benchmarks only)")
	since := flag.Int64("since", 0, "Unix time the run started (default: when testsummary started)")
	flag.Parse()
	start := time.Now()
	if *since > 0 {
		start = time.Unix(*since, 0)
	}
	s := newSummary()
	err := s.read(os.Stdin, os.Stdout)
	s.print(os.Stdout, *servers, time.Since(start))
	if err != nil {
		fmt.Fprintln(os.Stderr, "testsummary: reading the test stream:", err)
		os.Exit(1)
	}
	if !s.ok(*allowNone) {
		os.Exit(1)
	}
}
