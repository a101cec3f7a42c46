package main

import "testing"

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
