package probe

import (
	"fmt"
	"net"
	"net/netip"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// deferAccept makes the kernel hand the responder a connection only once
// the client sends data. A Pingmesh probe measures the handshake and
// resets: with this, it never becomes a full socket, an accept, or a
// wakeup of the responder at all, which at 2,500 peers every 10 s is most
// of the responder's work.
func deferAccept(l *net.TCPListener, seconds int) error {
	rc, err := l.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_DEFER_ACCEPT, seconds)
	}); err != nil {
		return err
	}
	return serr
}

// udp4Stamped reads IPv4 datagrams with their destination address
// (IP_PKTINFO) and kernel arrival time (SO_TIMESTAMPNS) from raw control
// messages, and replies from the address each was sent to.
type udp4Stamped struct {
	c   *net.UDPConn
	oob []byte
}

func newUDP4Stamped(c *net.UDPConn) (udpConn, bool) {
	rc, err := c.SyscallConn()
	if err != nil {
		return nil, false
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_PKTINFO, 1)
		if serr == nil {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1)
		}
	}); err != nil || serr != nil {
		return nil, false
	}
	return &udp4Stamped{c: c, oob: make([]byte, 256)}, true
}

func (u *udp4Stamped) read(b []byte) (int, netip.Addr, net.Addr, time.Time, error) {
	n, oobn, _, src, err := u.c.ReadMsgUDPAddrPort(b, u.oob)
	if err != nil {
		return 0, netip.Addr{}, nil, time.Time{}, err
	}
	var (
		dst netip.Addr
		rx  time.Time
	)
	msgs, _ := unix.ParseSocketControlMessage(u.oob[:oobn])
	for _, m := range msgs {
		switch {
		case m.Header.Level == unix.IPPROTO_IP && m.Header.Type == unix.IP_PKTINFO && len(m.Data) >= unix.SizeofInet4Pktinfo:
			info := (*unix.Inet4Pktinfo)(unsafe.Pointer(&m.Data[0]))
			dst = netip.AddrFrom4(info.Addr)
		case m.Header.Level == unix.SOL_SOCKET && m.Header.Type == unix.SO_TIMESTAMPNS && len(m.Data) >= 16:
			ts := (*unix.Timespec)(unsafe.Pointer(&m.Data[0]))
			rx = time.Unix(ts.Unix())
		}
	}
	return n, dst, net.UDPAddrFromAddrPort(src), rx, nil
}

func (u *udp4Stamped) reply(b []byte, from netip.Addr, to net.Addr) error {
	ua, ok := to.(*net.UDPAddr)
	if !ok {
		return fmt.Errorf("probe: reply to %v: not udp", to)
	}
	oob := unix.PktInfo4(&unix.Inet4Pktinfo{Spec_dst: from.As4()})
	_, _, err := u.c.WriteMsgUDPAddrPort(b, oob, ua.AddrPort())
	return err
}
