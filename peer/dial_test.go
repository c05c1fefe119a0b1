package peer

import (
	"fmt"
	"testing"
)

func TestDialsExactlyOneOfEachPair(t *testing.T) {
	const n = 90
	addr := func(i int) string { return fmt.Sprintf("10.1.0.%d:6881", 100+i) }
	dialled := make([]int, n)
	for i := range n {
		for j := range n {
			if i == j {
				continue
			}
			a, b := dials(addr(i), addr(j)), dials(addr(j), addr(i))
			if a == b {
				t.Fatalf("%s and %s: both dial = %v", addr(i), addr(j), a)
			}
			if a {
				dialled[i]++
			}
		}
	}
	// Every workstation dials some but not all of the others: no
	// workstation is left to wait for all the others, none dials them all.
	for i, d := range dialled {
		if d < n/4 || d > 3*n/4 {
			t.Errorf("%s dials %d of %d", addr(i), d, n-1)
		}
	}
}
