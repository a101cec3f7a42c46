package coord

import (
	"sort"
	"strconv"
	"strings"
)

// SortBySequence returns the names that are prefix followed by a sequence
// number (ten or more decimal digits, as Sequential creates make), ordered by
// that number. Other names are left out.
func SortBySequence(names []string, prefix string) []string {
	type seqName struct {
		n    int64
		name string
	}
	var out []seqName
	for _, name := range names {
		if !strings.HasPrefix(name, prefix) {
			continue
		}
		digits := name[len(prefix):]
		if len(digits) < 10 || strings.Trim(digits, "0123456789") != "" {
			continue
		}
		n, err := strconv.ParseInt(digits, 10, 64)
		if err != nil {
			continue
		}
		out = append(out, seqName{n, name})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].n < out[j].n })
	res := make([]string, len(out))
	for i, s := range out {
		res[i] = s.name
	}
	return res
}
