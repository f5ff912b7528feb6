//go:build linux

package probe

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"sync"
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

// TCPProberConfig configures a TCPProber.
type TCPProberConfig struct {
	// Local is the source address; invalid means the kernel chooses.
	Local netip.Addr
	// SynRetransmitAfter: see DefaultSynRetransmitAfter.
	SynRetransmitAfter time.Duration
	// MaxInFlight bounds concurrent connects (default 4096); a probe over
	// it reports OUTCOME_ERROR at once.
	MaxInFlight int
	Clock       clock.Clock
}

// TCPProber measures connect time to a peer's responder, Pingmesh style:
// a fresh socket and so a fresh ephemeral source port per probe (a new
// ECMP path sample each time), reset right after the handshake so that
// neither side keeps the connection in TIME_WAIT (at 2,500 peers every
// 10 s, a clean close would leave ~15,000 on the closing side).
//
// It drives its sockets with raw syscalls and one epoll set of its own,
// served by one goroutine: no goroutine, timer or runtime poller entry per
// probe, and the source port is known even when the SYN is never answered
// (the localizer needs the 5-tuple of lost probes most of all). The epoll
// set is itself waited on through the runtime's poller, so it costs no
// thread.
type TCPProber struct {
	cfg TCPProberConfig
	// kernelRTT: take the handshake RTT from TCP_INFO (real clock only).
	kernelRTT bool
	epfd      int
	ep        *os.File
	clock     clock.Clock

	mu       sync.Mutex
	inflight map[int32]*tcpPending
	byDue    tcpHeap
	closed   bool
}

type tcpPending struct {
	fd       int
	res      *wire.ProbeResult
	sent     time.Time
	deadline time.Time
	done     func(*wire.ProbeResult)
	index    int
}

type tcpHeap []*tcpPending

func (h tcpHeap) Len() int           { return len(h) }
func (h tcpHeap) Less(i, j int) bool { return h[i].deadline.Before(h[j].deadline) }
func (h tcpHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i]; h[i].index = i; h[j].index = j }
func (h *tcpHeap) Push(x any)        { p := x.(*tcpPending); p.index = len(*h); *h = append(*h, p) }
func (h *tcpHeap) Pop() any {
	old := *h
	p := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return p
}

// NewTCPProber creates the prober's epoll set. Call Run to complete probes.
func NewTCPProber(cfg TCPProberConfig) (*TCPProber, error) {
	if cfg.SynRetransmitAfter <= 0 {
		cfg.SynRetransmitAfter = DefaultSynRetransmitAfter
	}
	if cfg.MaxInFlight <= 0 {
		cfg.MaxInFlight = 4096
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.Real{}
	}
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("probe: tcp prober epoll: %w", err)
	}
	if err := unix.SetNonblock(epfd, true); err != nil {
		unix.Close(epfd)
		return nil, fmt.Errorf("probe: tcp prober epoll: %w", err)
	}
	_, real := cfg.Clock.(clock.Real)
	return &TCPProber{
		cfg: cfg, kernelRTT: real, epfd: epfd, ep: os.NewFile(uintptr(epfd), "tcp-prober-epoll"), clock: cfg.Clock,
		inflight: make(map[int32]*tcpPending),
	}, nil
}

// Start implements Prober: it sends the SYN now and reports when the
// handshake completes, fails or times out.
func (p *TCPProber) Start(ctx context.Context, t Target, done func(*wire.ProbeResult)) {
	start := p.clock.Now()
	res := newResult(t, start)
	if err := ctx.Err(); err != nil {
		res.Outcome, res.Error = wire.Outcome_OUTCOME_ERROR, shortError(err)
		done(res)
		return
	}
	timeout := t.Timeout
	if timeout <= 0 {
		timeout = time.Second
	}
	fd, sent, err := p.connect(t.Addr, res)
	if err == nil || !errors.Is(err, unix.EINPROGRESS) {
		p.finish(fd, res, sent, p.clock.Now(), err)
		done(res)
		return
	}
	pd := &tcpPending{fd: fd, res: res, sent: sent, deadline: start.Add(timeout), done: done}
	err = nil
	p.mu.Lock()
	switch {
	case p.closed:
		err = errors.New("prober stopped")
	case len(p.inflight) >= p.cfg.MaxInFlight:
		err = fmt.Errorf("probe: %d tcp probes in flight", len(p.inflight))
	default:
		p.inflight[int32(fd)] = pd
		heap.Push(&p.byDue, pd)
	}
	p.mu.Unlock()
	if err == nil {
		// Registered after the map entry, so the completion always finds it.
		if err = unix.EpollCtl(p.epfd, unix.EPOLL_CTL_ADD, fd, &unix.EpollEvent{Events: unix.EPOLLOUT, Fd: int32(fd)}); err != nil {
			if !p.take(pd) {
				return // Run's shutdown took it and reports it
			}
			err = fmt.Errorf("probe: tcp epoll add: %w", err)
		}
	}
	if err != nil {
		res.Outcome, res.Error = wire.Outcome_OUTCOME_ERROR, shortError(err)
		closeReset(fd)
		done(res)
	}
}

// take removes pd from the in-flight set; false if someone else did.
func (p *TCPProber) take(pd *tcpPending) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.inflight[int32(pd.fd)] != pd {
		return false
	}
	delete(p.inflight, int32(pd.fd))
	heap.Remove(&p.byDue, pd.index)
	return true
}

// connect opens a non-blocking socket and starts the handshake. It
// returns EINPROGRESS (wrapped) while the handshake is on its way.
func (p *TCPProber) connect(dst netip.AddrPort, res *wire.ProbeResult) (fd int, sent time.Time, err error) {
	if !dst.IsValid() {
		return -1, sent, fmt.Errorf("probe: tcp: invalid address %v", dst)
	}
	family := unix.AF_INET
	if dst.Addr().Is6() && !dst.Addr().Is4In6() {
		family = unix.AF_INET6
	}
	fd, err = unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, sent, fmt.Errorf("probe: tcp socket for %v: %w", dst, err)
	}
	if p.cfg.Local.IsValid() {
		// Bind the address only; the port is picked at connect time among
		// those free for this destination, not among all of them.
		unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_BIND_ADDRESS_NO_PORT, 1)
		if err := unix.Bind(fd, sockaddr(netip.AddrPortFrom(p.cfg.Local, 0), family)); err != nil {
			return fd, sent, fmt.Errorf("probe: tcp bind %v: %w", p.cfg.Local, err)
		}
	}
	sent = p.clock.Now()
	err = unix.Connect(fd, sockaddr(dst, family))
	if sa, serr := unix.Getsockname(fd); serr == nil {
		src := addrPortOf(sa)
		res.SrcAddr, res.SrcPort = src.Addr().String(), uint32(src.Port())
	}
	if err != nil {
		return fd, sent, fmt.Errorf("probe: tcp connect %v: %w", dst, err)
	}
	return fd, sent, nil
}

// finish classifies a completed connect into res and closes the socket.
func (p *TCPProber) finish(fd int, res *wire.ProbeResult, sent, end time.Time, err error) {
	rtt := end.Sub(sent)
	var kernelRTT time.Duration
	if err == nil && p.kernelRTT && fd >= 0 {
		// The kernel timed the SYN / SYN-ACK exchange itself: unlike our
		// wall clock, that excludes how long the completion waited for
		// the prober's goroutine. It is unset (0) after a retransmitted
		// SYN (Karn), where the wall clock is what we want anyway.
		if info, ierr := unix.GetsockoptTCPInfo(fd, unix.IPPROTO_TCP, unix.TCP_INFO); ierr == nil && info.Rtt > 0 {
			kernelRTT = time.Duration(info.Rtt) * time.Microsecond
		}
	}
	if fd >= 0 {
		closeReset(fd)
	}
	switch {
	case err == nil && rtt >= p.cfg.SynRetransmitAfter:
		res.Outcome, res.RttNs = wire.Outcome_OUTCOME_SYN_RETRANSMIT, int64(rtt)
	case err == nil && kernelRTT > 0 && kernelRTT < rtt:
		res.Outcome, res.RttNs = wire.Outcome_OUTCOME_OK, int64(kernelRTT)
	case err == nil:
		res.Outcome, res.RttNs = wire.Outcome_OUTCOME_OK, int64(rtt)
	case errors.Is(err, os.ErrDeadlineExceeded), errors.Is(err, syscall.ETIMEDOUT):
		res.Outcome, res.Error = wire.Outcome_OUTCOME_LOST, "connect timeout"
	case errors.Is(err, syscall.ECONNREFUSED):
		res.Outcome, res.Error, res.RttNs = wire.Outcome_OUTCOME_REFUSED, "connection refused", int64(rtt)
	default:
		res.Outcome, res.Error = wire.Outcome_OUTCOME_ERROR, shortError(err)
	}
}

// closeReset closes with linger 0: a RST, no TIME_WAIT on either side.
func closeReset(fd int) {
	unix.SetsockoptLinger(fd, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0})
	unix.Close(fd)
}

// Run completes probes until ctx ends; then it reports every probe still
// in flight as an error (cut short, not lost) and closes the epoll set.
func (p *TCPProber) Run(ctx context.Context) error {
	rc, err := p.ep.SyscallConn()
	if err != nil {
		return fmt.Errorf("probe: tcp prober: %w", err)
	}
	events := make([]unix.EpollEvent, 256)
	var ready []unix.EpollEvent
	for ctx.Err() == nil {
		// Wake for completions, for the earliest deadline, and at least
		// every 100 ms to notice ctx.
		clockNow := p.clock.Now()
		wake := clockNow.Add(100 * time.Millisecond)
		p.mu.Lock()
		if len(p.byDue) > 0 && p.byDue[0].deadline.Before(wake) {
			wake = p.byDue[0].deadline
		}
		p.mu.Unlock()
		// The kernel's deadline is on the real clock: translate, so an
		// agent whose probe clock is offset neither sleeps through its
		// stop nor spins.
		p.ep.SetReadDeadline(time.Now().Add(wake.Sub(clockNow)))
		ready = ready[:0]
		rerr := rc.Read(func(fd uintptr) bool {
			n, err := unix.EpollWait(int(fd), events, 0)
			if err != nil || n == 0 {
				return false
			}
			ready = append(ready, events[:n]...)
			return true
		})
		now := p.clock.Now()
		if rerr != nil && !errors.Is(rerr, os.ErrDeadlineExceeded) {
			return fmt.Errorf("probe: tcp prober epoll wait: %w", rerr)
		}
		for _, ev := range ready {
			p.mu.Lock()
			pd := p.inflight[ev.Fd]
			if pd != nil {
				delete(p.inflight, ev.Fd)
				heap.Remove(&p.byDue, pd.index)
			}
			p.mu.Unlock()
			if pd == nil {
				continue
			}
			var cerr error
			if e, err := unix.GetsockoptInt(pd.fd, unix.SOL_SOCKET, unix.SO_ERROR); err != nil {
				cerr = err
			} else if e != 0 {
				cerr = syscall.Errno(e)
			}
			p.finish(pd.fd, pd.res, pd.sent, now, cerr)
			pd.done(pd.res)
		}
		p.expire(now)
	}
	p.mu.Lock()
	p.closed = true
	cut := p.byDue
	p.byDue, p.inflight = nil, make(map[int32]*tcpPending)
	p.mu.Unlock()
	for _, pd := range cut {
		closeReset(pd.fd)
		pd.res.Outcome, pd.res.Error = wire.Outcome_OUTCOME_ERROR, "prober stopped"
		pd.done(pd.res)
	}
	p.ep.Close()
	return nil
}

// expire reports the probes whose deadline has passed as lost.
func (p *TCPProber) expire(now time.Time) {
	var lost []*tcpPending
	p.mu.Lock()
	for len(p.byDue) > 0 && !p.byDue[0].deadline.After(now) {
		pd := heap.Pop(&p.byDue).(*tcpPending)
		delete(p.inflight, int32(pd.fd))
		lost = append(lost, pd)
	}
	p.mu.Unlock()
	for _, pd := range lost {
		p.finish(pd.fd, pd.res, pd.sent, now, os.ErrDeadlineExceeded)
		pd.done(pd.res)
	}
}

// Probe runs one probe and waits for its result; Run must be running.
func (p *TCPProber) Probe(ctx context.Context, t Target) *wire.ProbeResult {
	ch := make(chan *wire.ProbeResult, 1)
	p.Start(ctx, t, func(r *wire.ProbeResult) { ch <- r })
	return <-ch
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
