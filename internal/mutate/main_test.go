package main

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

func TestParseApply(t *testing.T) {
	ms, err := parse("# c\nmutant a-x f.go ./p\n< \tx := 1\n< \ty := 2\n> \tx := 2\n\nmutant b-y g.go ./q\n< a\n> b\n")
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 2 || ms[0].From != "\tx := 1\n\ty := 2" || ms[0].To != "\tx := 2" || ms[1].Pkg != "./q" {
		t.Fatalf("%+v", ms)
	}
	got, err := apply("a\n\tx := 1\n\ty := 2\nb", ms[0])
	if err != nil || got != "a\n\tx := 2\nb" {
		t.Fatalf("%q %v", got, err)
	}
	if _, err := apply("nothing", ms[0]); err == nil {
		t.Fatal("a stale mutant applied")
	}
	for _, bad := range []string{"mutant a f.go\n", "< x\n", "mutant a f ./p\n< x\n> x\n", "mutant a f ./p\n< x\n> y\nmutant a f ./p\n< x\n> z\n"} {
		if _, err := parse(bad); err == nil {
			t.Errorf("parse(%q) accepted", bad)
		}
	}
}

// The list in the repository parses, and every mutant's lines occur exactly
// once in its file: a mutant that no longer applies is caught here, not when
// someone runs the (long) mutation run.
func TestListApplies(t *testing.T) {
	text, err := os.ReadFile("mutants.txt")
	if err != nil {
		t.Fatal(err)
	}
	ms, err := parse(string(text))
	if err != nil {
		t.Fatal(err)
	}
	per := map[string]int{}
	for _, m := range ms {
		src, err := os.ReadFile("../../" + m.File)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := apply(string(src), m); err != nil {
			t.Error(err)
		}
		per[strings.SplitN(m.Name, "-", 2)[0]]++
	}
	for _, b := range []string{"etcd", "zk", "consul"} {
		if per[b] < 40 {
			t.Errorf("%d mutants for %s, want at least 40", per[b], b)
		}
	}
}

func TestKiller(t *testing.T) {
	out := "=== RUN   TestConformance\n    --- FAIL: TestConformance/Fault/Suspended (2.1s)\n--- FAIL: TestConformance (9s)\nFAIL\n"
	if got := killer(out, false); got != "TestConformance/Fault/Suspended" {
		t.Errorf("killer = %q", got)
	}
	if got := killer(out, true); got != "the timeout" {
		t.Errorf("killer on a timeout = %q", got)
	}
	if got := killer("FAIL\tgithub.com/x [build failed]\n", false); got != "the build" {
		t.Errorf("killer of a build failure = %q", got)
	}
}

// The scratch copy keeps file modes: the tests run the project's scripts.
func TestCopyKeepsModes(t *testing.T) {
	src, dst := t.TempDir(), t.TempDir()
	if err := os.WriteFile(src+"/run.sh", []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(src+"/data", []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := copyTree(src, dst); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]os.FileMode{"run.sh": 0o755, "data": 0o600} {
		fi, err := os.Stat(dst + "/" + name)
		if err != nil || fi.Mode().Perm() != want {
			t.Fatalf("%s: mode %v (%v), want %v", name, fi.Mode().Perm(), err, want)
		}
	}
}

func TestHints(t *testing.T) {
	all := []Mutant{{Name: "a", File: "f.go"}, {Name: "b", File: "f.go"}, {Name: "c", File: "f.go"}, {Name: "d", File: "g.go"}}
	killers := map[string]string{"a": "TestX/one", "c": "TestY", "d": "TestZ"}
	if got := hints(all[0], all, killers); len(got) != 1 || got[0] != "TestX/one" {
		t.Errorf("a mutant killed before: hints %q, want its own killer only", got)
	}
	if got := strings.Join(hints(all[1], all, killers), " "); got != "TestX/one TestY" {
		t.Errorf("a mutant never killed: hints %q, want the killers of its file's mutants", got)
	}
	if got := hints(Mutant{Name: "e", File: "h.go"}, all, killers); len(got) != 0 {
		t.Errorf("no killer known in the file: hints %q", got)
	}
}

func TestKillersFile(t *testing.T) {
	path := t.TempDir() + "/sub/killers.tsv"
	in := map[string]string{"zk-a": "TestConformance/Fault/Stall", "etcd-b": "TestWatch"}
	if err := writeKillers(path, in); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	got := parseKillers(string(data) + "garbage\nx\tnot-a-test\n")
	if len(got) != 2 || got["zk-a"] != in["zk-a"] || got["etcd-b"] != in["etcd-b"] {
		t.Fatalf("read back %v, want %v", got, in)
	}
}

// The pattern runPattern builds selects, in a real go test, every test
// named and leaves out the others of the same levels.
func TestRunPatternSelects(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs a test binary")
	}
	dir := t.TempDir()
	src := `package p

import "testing"

func TestA(t *testing.T) {
	t.Run("x", func(t *testing.T) {
		t.Run("y z", func(t *testing.T) { t.Log("ran A/x/y_z") })
		t.Run("w", func(t *testing.T) { t.Log("ran A/x/w") })
	})
	t.Run("v", func(t *testing.T) { t.Log("ran A/v") })
}

func TestB(t *testing.T) { t.Log("ran B") }

func TestBB(t *testing.T) { t.Log("ran BB") }

func TestC(t *testing.T) { t.Log("ran C") }
`
	for name, text := range map[string]string{"go.mod": "module p\n\ngo 1.21\n", "p_test.go": src} {
		if err := os.WriteFile(dir+"/"+name, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command("go", "test", "-count=1", "-v", "-run", runPattern([]string{"TestA/x/y_z", "TestB"}), ".")
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	for _, want := range []string{"ran A/x/y_z", "ran B"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("%s: not run\n%s", want, out)
		}
	}
	for _, not := range []string{"ran A/x/w", "ran A/v", "ran BB", "ran C"} {
		if strings.Contains(string(out), not) {
			t.Errorf("%s: run, but not named\n%s", not, out)
		}
	}
}
