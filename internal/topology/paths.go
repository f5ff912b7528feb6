package topology

// Path is one route a packet can take from a source host to a destination
// host: the element names in order, hosts included.
type Path []string

// Links lists the directed links of the path.
func (p Path) Links() []DirectedLink {
	if len(p) < 2 {
		return nil
	}
	out := make([]DirectedLink, len(p)-1)
	for i := range out {
		out[i] = DirectedLink{From: p[i], To: p[i+1]}
	}
	return out
}

// Paths returns the equal-cost shortest paths from host src to host dst,
// as ECMP would spread flows over them. Only switches forward; hosts are
// endpoints. Nil when either host is unknown or they are not connected.
func (t *Topology) Paths(src, dst string) []Path {
	s, d := t.hosts[src], t.hosts[dst]
	if s == nil || d == nil || src == dst {
		return nil
	}
	core := t.SwitchPaths(t.racks[s.Rack].ToR, t.racks[d.Rack].ToR)
	out := make([]Path, len(core))
	for i, c := range core {
		p := make(Path, 0, len(c)+2)
		p = append(p, src)
		p = append(p, c...)
		p = append(p, dst)
		out[i] = p
	}
	return out
}

// SwitchPaths returns the equal-cost shortest switch-only paths between two
// switches (from and to included). The result is cached and shared: callers
// must not modify it. Safe for concurrent use.
func (t *Topology) SwitchPaths(from, to string) [][]string {
	key := [2]string{from, to}
	t.paths.mu.Lock()
	cached, ok := t.paths.m[key]
	t.paths.mu.Unlock()
	if ok {
		return cached
	}
	paths := t.shortestSwitchPaths(from, to)
	t.paths.mu.Lock()
	t.paths.m[key] = paths
	t.paths.mu.Unlock()
	return paths
}

func (t *Topology) shortestSwitchPaths(from, to string) [][]string {
	if t.switches[from] == nil || t.switches[to] == nil {
		return nil
	}
	if from == to {
		return [][]string{{from}}
	}
	// BFS from the destination gives every switch its distance to it; a
	// path is shortest iff each hop decreases that distance by one.
	dist := map[string]int{to: 0}
	queue := []string{to}
	for len(queue) > 0 {
		n := queue[0]
		queue = queue[1:]
		if n == from {
			break
		}
		for _, m := range t.adj[n] {
			if _, seen := dist[m]; seen || t.switches[m] == nil {
				continue
			}
			dist[m] = dist[n] + 1
			queue = append(queue, m)
		}
	}
	if _, ok := dist[from]; !ok {
		return nil
	}
	var out [][]string
	var walk func(n string, prefix []string)
	walk = func(n string, prefix []string) {
		prefix = append(prefix, n)
		if n == to {
			out = append(out, append([]string(nil), prefix...))
			return
		}
		for _, m := range t.adj[n] {
			if dm, ok := dist[m]; ok && dm == dist[n]-1 && t.switches[m] != nil {
				walk(m, prefix)
			}
		}
	}
	walk(from, nil)
	return out
}
