package lab

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// Relay is the userspace impairment path of link_latency: the link's veth
// pair is split into two pairs whose inner ends (A and B, in the relay
// namespace) it joins, copying every frame from one to the other after a
// delay. The kernel here offers no netem, so this is the lab's own delay
// line. Frames carry a virtio-net header (PACKET_VNET_HDR) so that
// segmentation-offloaded and checksum-partial frames pass through intact.
type Relay struct {
	A, B             string        // interfaces in the relay's namespace
	DelayAB, DelayBA time.Duration // A→B and B→A
	// MaxQueue bounds the frames in flight per direction; beyond it
	// frames are dropped (and counted), never buffered without limit.
	MaxQueue int

	// Ready, if set, is called once both sockets are open.
	Ready func()

	Forwarded, Dropped atomic.Int64
}

// relayReady is what `meshlens lab relay` prints once it relays, and what
// the lab waits for before it calls a splice done.
const relayReady = "relay ready"

// packetSocket opens an AF_PACKET socket on ifname that sees every frame
// arriving there but not those it sends itself.
func packetSocket(ifname string) (*os.File, error) {
	ifi, err := net.InterfaceByName(ifname)
	if err != nil {
		return nil, fmt.Errorf("lab: relay: %w", err)
	}
	proto := int(htons(unix.ETH_P_ALL))
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, proto)
	if err != nil {
		return nil, fmt.Errorf("lab: relay: AF_PACKET socket: %w", err)
	}
	for _, o := range []struct{ opt, val int }{{unix.PACKET_VNET_HDR, 1}, {unix.PACKET_IGNORE_OUTGOING, 1}} {
		if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, o.opt, o.val); err != nil {
			unix.Close(fd)
			return nil, fmt.Errorf("lab: relay: %s: socket option %d: %w", ifname, o.opt, err)
		}
	}
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: uint16(proto), Ifindex: ifi.Index}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("lab: relay: bind %s: %w", ifname, err)
	}
	return os.NewFile(uintptr(fd), "packet:"+ifname), nil
}

func htons(v uint16) uint16 {
	var b [2]byte
	binary.BigEndian.PutUint16(b[:], v)
	return binary.NativeEndian.Uint16(b[:])
}

// Run relays until ctx ends.
func (r *Relay) Run(ctx context.Context) error {
	if r.MaxQueue <= 0 {
		r.MaxQueue = 4096
	}
	a, err := packetSocket(r.A)
	if err != nil {
		return err
	}
	b, err := packetSocket(r.B)
	if err != nil {
		a.Close()
		return err
	}
	if r.Ready != nil {
		r.Ready()
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 4)
	go func() { errc <- r.pump(ctx, a, b, r.DelayAB) }()
	go func() { errc <- r.pump(ctx, b, a, r.DelayBA) }()
	<-ctx.Done()
	a.Close()
	b.Close()
	var first error
	for range 2 {
		if err := <-errc; err != nil && first == nil && !errors.Is(err, os.ErrClosed) {
			first = err
		}
	}
	return first
}

type frame struct {
	due  time.Time
	data []byte
}

// pump copies frames from in to out, each delay after it arrived. The
// delay is the same for every frame of a direction, so a FIFO keeps order.
func (r *Relay) pump(ctx context.Context, in, out *os.File, delay time.Duration) error {
	q := make(chan frame, r.MaxQueue)
	done := make(chan error, 1)
	go func() {
		defer close(done)
		for {
			var f frame
			select {
			case <-ctx.Done():
				return
			case f = <-q:
			}
			if d := time.Until(f.due); d > 0 {
				t := time.NewTimer(d)
				select {
				case <-ctx.Done():
					t.Stop()
					return
				case <-t.C:
				}
			}
			if _, err := out.Write(f.data); err != nil {
				if errors.Is(err, os.ErrClosed) {
					return
				}
				r.Dropped.Add(1) // e.g. the far interface went down
				continue
			}
			r.Forwarded.Add(1)
		}
	}()
	buf := make([]byte, 1<<17)
	for {
		n, err := in.Read(buf)
		if err != nil {
			<-done
			return err
		}
		f := frame{due: time.Now().Add(delay), data: append([]byte(nil), buf[:n]...)}
		select {
		case q <- f:
		default:
			r.Dropped.Add(1)
		}
	}
}

// RelayReadyLine is the line the relay command prints when Ready is called.
func RelayReadyLine() string { return relayReady }

// CheckPacketSockets says whether this kernel lets the relay open its
// sockets (AF_PACKET with virtio-net headers, ignoring its own output).
func CheckPacketSockets() error {
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_ALL)))
	if err != nil {
		return fmt.Errorf("AF_PACKET socket: %w", err)
	}
	defer unix.Close(fd)
	for _, o := range []struct {
		name     string
		opt, val int
	}{{"PACKET_VNET_HDR", unix.PACKET_VNET_HDR, 1}, {"PACKET_IGNORE_OUTGOING", unix.PACKET_IGNORE_OUTGOING, 1}} {
		if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, o.opt, o.val); err != nil {
			return fmt.Errorf("AF_PACKET %s: %w", o.name, err)
		}
	}
	return nil
}
