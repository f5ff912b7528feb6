package probe

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"

	"github.com/meshlens/meshlens/internal/clock"
	"github.com/meshlens/meshlens/internal/wire"
)

// ICMPProberConfig configures an ICMPProber.
type ICMPProberConfig struct {
	// Local is the source address; invalid means any.
	Local netip.Addr
	Clock clock.Clock
}

// ICMPProber sends ICMP echoes (IPv4) from one socket: an unprivileged
// ping socket when net.ipv4.ping_group_range admits the agent's group,
// else a raw socket (root or CAP_NET_RAW). Replies are matched by (peer,
// seq); on a raw socket, which sees every echo reply of the host, also by
// the prober's echo id.
type ICMPProber struct {
	conn  *icmp.PacketConn
	raw   bool
	id    int
	clock clock.Clock

	mu      sync.Mutex
	next    map[netip.Addr]uint64
	pending map[icmpKey]chan time.Time
}

type icmpKey struct {
	peer netip.Addr
	seq  uint16
}

// NewICMPProber opens the socket, or says why it cannot.
func NewICMPProber(cfg ICMPProberConfig) (*ICMPProber, error) {
	if cfg.Clock == nil {
		cfg.Clock = clock.Real{}
	}
	local := "0.0.0.0"
	if cfg.Local.IsValid() {
		local = cfg.Local.String()
	}
	p := &ICMPProber{clock: cfg.Clock, next: map[netip.Addr]uint64{}, pending: map[icmpKey]chan time.Time{}}
	conn, uerr := icmp.ListenPacket("udp4", local)
	if uerr != nil {
		var rerr error
		conn, rerr = icmp.ListenPacket("ip4:icmp", local)
		if rerr != nil {
			return nil, fmt.Errorf("probe: icmp on %s: no ping socket (%v; widen net.ipv4.ping_group_range to the agent's group) and no raw socket (%v; needs root or CAP_NET_RAW)", local, uerr, rerr)
		}
		p.raw = true
		var b [2]byte
		rand.Read(b[:])
		p.id = int(binary.BigEndian.Uint16(b[:]))
	}
	p.conn = conn
	return p, nil
}

// Run receives replies until ctx ends, then closes the socket.
func (p *ICMPProber) Run(ctx context.Context) error {
	go func() {
		<-ctx.Done()
		p.conn.Close()
	}()
	buf := make([]byte, 1500)
	for {
		n, from, err := p.conn.ReadFrom(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) || ctx.Err() != nil {
				return nil
			}
			continue
		}
		at := p.clock.Now()
		msg, err := icmp.ParseMessage(1, buf[:n]) // 1: ICMPv4
		if err != nil || msg.Type != ipv4.ICMPTypeEchoReply {
			continue
		}
		echo, ok := msg.Body.(*icmp.Echo)
		if !ok || (p.raw && echo.ID != p.id) {
			continue
		}
		var peer netip.Addr
		switch a := from.(type) {
		case *net.UDPAddr:
			peer = a.AddrPort().Addr().Unmap()
		case *net.IPAddr:
			peer, _ = netip.AddrFromSlice(a.IP)
			peer = peer.Unmap()
		}
		p.mu.Lock()
		ch := p.pending[icmpKey{peer, uint16(echo.Seq)}]
		p.mu.Unlock()
		if ch != nil {
			select {
			case ch <- at:
			default: // a duplicate
			}
		}
	}
}

// Probe implements SyncProber.
func (p *ICMPProber) Probe(ctx context.Context, t Target) *wire.ProbeResult {
	start := p.clock.Now()
	res := newResult(t, start)
	peer := t.Addr.Addr().Unmap()
	if !peer.Is4() {
		res.Outcome, res.Error = wire.Outcome_OUTCOME_ERROR, "icmp probes are ipv4 only"
		return res
	}
	timeout := t.Timeout
	if timeout <= 0 {
		timeout = time.Second
	}
	p.mu.Lock()
	p.next[peer]++
	seq := p.next[peer]
	key := icmpKey{peer, uint16(seq)}
	ch := make(chan time.Time, 1)
	p.pending[key] = ch
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		delete(p.pending, key)
		p.mu.Unlock()
	}()
	res.Seq = seq
	var data [8]byte
	binary.BigEndian.PutUint64(data[:], uint64(start.UnixNano()))
	b, err := (&icmp.Message{Type: ipv4.ICMPTypeEcho, Body: &icmp.Echo{ID: p.id, Seq: int(uint16(seq)), Data: data[:]}}).Marshal(nil)
	if err != nil {
		res.Outcome, res.Error = wire.Outcome_OUTCOME_ERROR, shortError(err)
		return res
	}
	var dst net.Addr = &net.IPAddr{IP: peer.AsSlice()}
	if !p.raw {
		dst = &net.UDPAddr{IP: peer.AsSlice()}
	}
	sent := p.clock.Now()
	if _, err := p.conn.WriteTo(b, dst); err != nil {
		res.Outcome, res.Error = wire.Outcome_OUTCOME_ERROR, shortError(fmt.Errorf("probe: icmp send to %v: %w", peer, err))
		return res
	}
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case at := <-ch:
		res.Outcome, res.RttNs = wire.Outcome_OUTCOME_OK, int64(at.Sub(sent))
	case <-timer.C:
		res.Outcome, res.Error = wire.Outcome_OUTCOME_LOST, "no reply"
	case <-ctx.Done():
		res.Outcome, res.Error = wire.Outcome_OUTCOME_ERROR, shortError(ctx.Err())
	}
	return res
}
