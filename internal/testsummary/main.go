// Command testsummary reads `go test -json` on standard input, prints the
// tests' output as `go test -v` would, and ends with a summary: the servers
// the run used, tests (and subtests) passed, skipped and failed per package,
// the names of those skipped or failed, and the wall time. Its last line is
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
	switch {
	case e.Action == "output":
		return e.Output
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
	s := &summary{pkgs: map[string]*pkgResult{}}
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
