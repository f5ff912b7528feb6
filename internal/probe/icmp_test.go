package probe

import (
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/meshlens/meshlens/internal/wire"
)

// TestICMPProbe needs a ping socket (ping_group_range) or root; without
// either, NewICMPProber must say so clearly, and that is what is tested.
func TestICMPProbe(t *testing.T) {
	p, err := NewICMPProber(ICMPProberConfig{})
	if err != nil {
		if !strings.Contains(err.Error(), "ping_group_range") || !strings.Contains(err.Error(), "CAP_NET_RAW") {
			t.Fatalf("unclear error: %v", err)
		}
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	defer func() { cancel(); <-done }()
	tests := []struct {
		name string
		addr string
		want wire.Outcome
	}{
		{"loopback", "127.0.0.1", wire.Outcome_OUTCOME_OK},
		{"other loopback", "127.3.0.9", wire.Outcome_OUTCOME_OK},
		{"ipv6 unsupported", "::1", wire.Outcome_OUTCOME_ERROR},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for seq := uint64(1); seq <= 3; seq++ {
				res := p.Probe(context.Background(), Target{Name: "peer", Protocol: wire.Protocol_PROTOCOL_ICMP,
					Addr: netip.AddrPortFrom(netip.MustParseAddr(tc.addr), 0), Timeout: 2 * time.Second})
				if res.Outcome != tc.want {
					t.Fatalf("outcome %v (%s), want %v", res.Outcome, res.Error, tc.want)
				}
				if tc.want == wire.Outcome_OUTCOME_OK && (res.Seq != seq || res.RttNs <= 0 || res.DstAddr != tc.addr || res.DstPort != 0) {
					t.Errorf("probe %d: %v", seq, res)
				}
			}
		})
	}
}
