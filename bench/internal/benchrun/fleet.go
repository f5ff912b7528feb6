package benchrun

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
)

// Fabric is the shape of a generated one-DC topology: pods × racks per
// pod × hosts per rack, with leaves per pod and spines.
type Fabric struct {
	Pods, RacksPerPod, HostsPerRack, LeavesPerPod, Spines int
}

// Hosts is how many hosts the fabric has.
func (f Fabric) Hosts() int { return f.Pods * f.RacksPerPod * f.HostsPerRack }

// GenTopology writes the fabric's topology, made by the binary's
// `topo gen`, to file: the hosts the server knows and the load generator
// publishes as.
func GenTopology(ctx context.Context, bin, file string, f Fabric) error {
	data, err := exec.CommandContext(ctx, bin, "topo", "gen", "--dcs", "1", "--pods", strconv.Itoa(f.Pods),
		"--racks-per-pod", strconv.Itoa(f.RacksPerPod), "--hosts-per-rack", strconv.Itoa(f.HostsPerRack),
		"--leaves-per-pod", strconv.Itoa(f.LeavesPerPod), "--spines", strconv.Itoa(f.Spines)).Output()
	if err != nil {
		return fmt.Errorf("topo gen: %w", err)
	}
	return os.WriteFile(file, data, 0o644)
}

// ProcStatus adds the named fields of /proc/PID/status (sizes in kB, such
// as VmRSS, RssAnon, RssFile) to v, in bytes.
func ProcStatus(pid int, v map[string]float64, fields ...string) error {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return err
	}
	for _, line := range strings.Split(string(data), "\n") {
		name, rest, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		for _, f := range fields {
			if name != f {
				continue
			}
			kb, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 64)
			if err != nil {
				return fmt.Errorf("/proc/%d/status %s: %w", pid, name, err)
			}
			v[name] = kb * 1024
		}
	}
	return nil
}
