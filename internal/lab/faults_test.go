package lab

import (
	"strings"
	"testing"
)

// TestHostDownNFTables: a host that is down accepts and sends nothing on
// any interface (its fabric link and the management network alike), and
// forwards nothing it would not have forwarded anyway; the other hosts'
// namespaces are untouched, and clearing the fault removes the table.
func TestHostDownNFTables(t *testing.T) {
	p := small(t)
	const host = "dc1-pod1-rack1-h01"
	f, err := p.Resolve(FaultRequest{Kind: HostDown, Element: host})
	if err != nil {
		t.Fatal(err)
	}
	if f != (Fault{Kind: HostDown, Element: host}) {
		t.Fatalf("resolved %+v", f)
	}
	if got := f.String(); got != "host_down "+host {
		t.Errorf("String() = %q", got)
	}
	script := p.NFTables(host, []Fault{f})
	for _, hook := range []string{"input", "output"} {
		chain := "chain " + hook + " {\n\t\ttype filter hook " + hook + " priority 0; policy accept;\n\t\tcounter drop comment \"host_down " + host + "\"\n\t}"
		if !strings.Contains(script, chain) {
			t.Errorf("no unconditional drop at the %s hook:\n%s", hook, script)
		}
	}
	// Nothing narrows the drop to an interface: the management network
	// goes silent with the fabric.
	if strings.Contains(script, "ifname") {
		t.Errorf("the drop names an interface:\n%s", script)
	}
	if got := p.NFTables("dc1-pod1-rack1-h02", []Fault{f}); got != "" {
		t.Errorf("another host's namespace gets rules:\n%s", got)
	}
	if got := p.NFTables(host, nil); got != "" {
		t.Errorf("cleared, the host keeps rules:\n%s", got)
	}
	if got := p.Touches(f); len(got) != 1 || got[0] != host {
		t.Errorf("Touches = %v, want only %s", got, host)
	}
	if _, err := p.Resolve(FaultRequest{Kind: HostDown, Element: "dc1-pod1-rack1-tor"}); err == nil {
		t.Error("host_down accepted on a switch")
	}
}
