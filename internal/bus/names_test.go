package bus

import (
	"fmt"
	"testing"
)

// TestAgentPartition: every host of a rack is in its rack's partition,
// and a host in no rack in the partition of its own name.
func TestAgentPartition(t *testing.T) {
	for _, n := range []int{0, 1, 2, 3, 7, 16} {
		seen := map[int]bool{}
		for r := 1; r <= 40; r++ {
			rack := fmt.Sprintf("dc1-pod%d-rack%d", r%4+1, r)
			want := Partition(rack, n)
			if want < 0 || want >= max(n, 1) {
				t.Fatalf("rack %s: partition %d of %d", rack, want, n)
			}
			seen[want] = true
			for h := 1; h <= 12; h++ {
				host := fmt.Sprintf("%s-h%02d", rack, h)
				if got := AgentPartition(host, rack, n); got != want {
					t.Fatalf("%d partitions: host %s of rack %s in %d, its rack in %d", n, host, rack, got, want)
				}
			}
		}
		// Racks spread: a few partitions each get some of 40 racks.
		if n > 1 && n <= 7 && len(seen) != n {
			t.Errorf("%d partitions: 40 racks land in only %d", n, len(seen))
		}
		for _, host := range []string{"lonely", "dc9-pod1-rack1-h01", "x"} {
			if got, want := AgentPartition(host, "", n), Partition(host, n); got != want {
				t.Errorf("%d partitions: host %s in no rack in %d, its name's is %d", n, host, got, want)
			}
		}
	}
}
