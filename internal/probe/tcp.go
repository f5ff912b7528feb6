//go:build linux

package probe

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/meshlens/meshlens/internal/clock"
	"github.com/meshlens/meshlens/internal/wire"
)

// DefaultSynRetransmitAfter is the connect time from which a TCP probe is
// counted as a dropped SYN: Linux's initial retransmission timeout is 1 s
// (older stacks 3 s), and no healthy datacenter connect takes that long.
const DefaultSynRetransmitAfter = time.Second

// TCPProber measures connect time to a peer's responder, Pingmesh style:
// a fresh socket and so a fresh ephemeral source port per probe (a new
// ECMP path sample each time), closed with a reset right after the
// handshake so that neither side keeps the connection in TIME_WAIT (at
// 2,500 peers every 10 s a clean close would leave ~15,000 on the closing
// side).
//
// It drives the socket with raw syscalls rather than net.Dialer so the
// source port is known even when the SYN is never answered (the localizer
// needs the 5-tuple of lost probes most of all), and to stay cheap.
type TCPProber struct {
	// Local is the source address; invalid means the kernel chooses.
	Local netip.Addr
	// SynRetransmitAfter: see DefaultSynRetransmitAfter.
	SynRetransmitAfter time.Duration
	Clock              clock.Clock
}

// Probe implements SyncProber.
func (p *TCPProber) Probe(ctx context.Context, t Target) *wire.ProbeResult {
	clk := p.Clock
	if clk == nil {
		clk = clock.Real{}
	}
	start := clk.Now()
	res := newResult(t, start)
	if err := ctx.Err(); err != nil {
		res.Outcome, res.Error = wire.Outcome_OUTCOME_ERROR, shortError(err)
		return res
	}
	timeout := t.Timeout
	if timeout <= 0 {
		timeout = time.Second
	}
	src, rtt, err := p.connect(t.Addr, start, timeout, clk)
	if src.IsValid() {
		res.SrcAddr = src.Addr().String()
		res.SrcPort = uint32(src.Port())
	}
	res.RttNs = int64(rtt)
	retransmitAfter := p.SynRetransmitAfter
	if retransmitAfter <= 0 {
		retransmitAfter = DefaultSynRetransmitAfter
	}
	switch {
	case err == nil && rtt >= retransmitAfter:
		res.Outcome = wire.Outcome_OUTCOME_SYN_RETRANSMIT
	case err == nil:
		res.Outcome = wire.Outcome_OUTCOME_OK
	case errors.Is(err, os.ErrDeadlineExceeded), errors.Is(err, syscall.ETIMEDOUT):
		res.Outcome, res.Error = wire.Outcome_OUTCOME_LOST, "connect timeout"
	case errors.Is(err, syscall.ECONNREFUSED):
		res.Outcome, res.Error = wire.Outcome_OUTCOME_REFUSED, "connection refused"
	default:
		res.Outcome, res.Error = wire.Outcome_OUTCOME_ERROR, shortError(err)
		res.RttNs = 0
	}
	if res.Outcome != wire.Outcome_OUTCOME_OK && res.Outcome != wire.Outcome_OUTCOME_SYN_RETRANSMIT && res.Outcome != wire.Outcome_OUTCOME_REFUSED {
		res.RttNs = 0
	}
	return res
}

// connect opens a non-blocking socket, connects it to dst and waits for
// the handshake through the runtime's poller, up to timeout.
func (p *TCPProber) connect(dst netip.AddrPort, start time.Time, timeout time.Duration, clk clock.Clock) (src netip.AddrPort, rtt time.Duration, err error) {
	if !dst.IsValid() {
		return src, 0, fmt.Errorf("probe: tcp: invalid address %v", dst)
	}
	family := unix.AF_INET
	if dst.Addr().Is6() && !dst.Addr().Is4In6() {
		family = unix.AF_INET6
	}
	fd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return src, 0, fmt.Errorf("probe: tcp socket for %v: %w", dst, err)
	}
	f := os.NewFile(uintptr(fd), "tcp-probe")
	defer func() {
		// Linger 0: close with RST, no TIME_WAIT on either side.
		unix.SetsockoptLinger(fd, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0})
		f.Close()
	}()
	if p.Local.IsValid() {
		// Bind the address only; the port is picked at connect time among
		// those free for this destination, not among all of them.
		unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_BIND_ADDRESS_NO_PORT, 1)
		if err := unix.Bind(fd, sockaddr(netip.AddrPortFrom(p.Local, 0), family)); err != nil {
			return src, 0, fmt.Errorf("probe: tcp bind %v: %w", p.Local, err)
		}
	}
	sent := clk.Now()
	err = unix.Connect(fd, sockaddr(dst, family))
	if sa, serr := unix.Getsockname(fd); serr == nil {
		src = addrPortOf(sa)
	}
	switch {
	case err == nil:
		return src, clk.Now().Sub(sent), nil
	case errors.Is(err, unix.EINPROGRESS), errors.Is(err, unix.EINTR):
	default:
		return src, 0, fmt.Errorf("probe: tcp connect %v: %w", dst, err)
	}
	rc, err := f.SyscallConn()
	if err != nil {
		return src, 0, fmt.Errorf("probe: tcp connect %v: %w", dst, err)
	}
	if err := f.SetWriteDeadline(start.Add(timeout)); err != nil {
		return src, 0, fmt.Errorf("probe: tcp connect %v: %w", dst, err)
	}
	var connErr error
	werr := rc.Write(func(fd uintptr) bool {
		e, gerr := unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_ERROR)
		if gerr != nil {
			connErr = gerr
			return true
		}
		if e != 0 {
			connErr = syscall.Errno(e)
			return true
		}
		// Writable with no error may be a spurious wakeup: connected only
		// if the peer is known.
		_, perr := unix.Getpeername(int(fd))
		return perr == nil
	})
	rtt = clk.Now().Sub(sent)
	if werr != nil {
		return src, rtt, werr
	}
	if connErr != nil {
		return src, rtt, fmt.Errorf("probe: tcp connect %v: %w", dst, connErr)
	}
	return src, rtt, nil
}

func sockaddr(a netip.AddrPort, family int) unix.Sockaddr {
	if family == unix.AF_INET {
		return &unix.SockaddrInet4{Port: int(a.Port()), Addr: a.Addr().Unmap().As4()}
	}
	return &unix.SockaddrInet6{Port: int(a.Port()), Addr: a.Addr().As16()}
}

func addrPortOf(sa unix.Sockaddr) netip.AddrPort {
	switch sa := sa.(type) {
	case *unix.SockaddrInet4:
		return netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), uint16(sa.Port))
	case *unix.SockaddrInet6:
		return netip.AddrPortFrom(netip.AddrFrom16(sa.Addr).Unmap(), uint16(sa.Port))
	}
	return netip.AddrPort{}
}
