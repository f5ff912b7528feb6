package probe

import (
	"net"

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
