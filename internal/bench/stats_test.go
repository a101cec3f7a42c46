package main

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestQuantile(t *testing.T) {
	xs := []float64{5, 1, 3, 2, 4}
	for _, c := range []struct{ q, want float64 }{{0, 1}, {0.25, 2}, {0.5, 3}, {0.75, 4}, {1, 5}} {
		if got := quantile(xs, c.q); got != c.want {
			t.Errorf("quantile(%v) = %v, want %v", c.q, got, c.want)
		}
	}
	if got := quantile([]float64{1, 2}, 0.5); got != 1.5 {
		t.Errorf("interpolated median = %v, want 1.5", got)
	}
	if xs[0] != 5 {
		t.Error("quantile sorted its input")
	}
	if got := ratioCell([]float64{1, 2, 3}); got != "2.00× (1.50-2.50)" {
		t.Errorf("ratioCell = %q", got)
	}
}

func TestInChunks(t *testing.T) {
	var mu sync.Mutex
	var got [][2]int
	runs, err := inChunks(context.Background(), 10, 4, func(_ context.Context, lo, hi int) error {
		mu.Lock()
		got = append(got, [2]int{lo, hi})
		mu.Unlock()
		return nil
	})
	slices.SortFunc(got, func(a, b [2]int) int { return a[0] - b[0] })
	if err != nil || runs != 3 || len(got) != 3 || got[0] != [2]int{0, 4} || got[1] != [2]int{4, 8} || got[2] != [2]int{8, 10} {
		t.Errorf("inChunks(10, 4): %d runs %v, %v", runs, got, err)
	}
	if runs, err := inChunks(context.Background(), 0, 4, func(context.Context, int, int) error { return errors.New("called") }); runs != 0 || err != nil {
		t.Errorf("inChunks(0, 4): %d runs, %v", runs, err)
	}
}

func TestCPUBusy(t *testing.T) {
	var c cpuBusy
	c.start()
	for start := time.Now(); time.Since(start) < 50*time.Millisecond; {
	}
	c.stop()
	if _, _, ok := cpuJiffies(); !ok {
		if c.String() != "" {
			t.Errorf("unreadable /proc/stat gave %q", c.String())
		}
		t.Skip("no /proc/stat")
	}
	if c.busy > c.all || c.all == 0 {
		t.Fatalf("busy %d of %d jiffies", c.busy, c.all)
	}
	if s := c.String(); !strings.HasPrefix(s, ", CPUs ") || !strings.HasSuffix(s, "% busy") {
		t.Errorf("String() = %q", s)
	}
}
