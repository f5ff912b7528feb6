package probe

import (
	"net"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// enableRxTimestamps asks the kernel to stamp each datagram with its
// arrival time, so an echo's RTT does not include how long the reply
// waited for the prober's goroutine.
func enableRxTimestamps(c *net.UDPConn) bool {
	rc, err := c.SyscallConn()
	if err != nil {
		return false
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1)
	}); err != nil || serr != nil {
		return false
	}
	return true
}

// rxTimestamp finds the kernel's arrival time in a datagram's control data.
func rxTimestamp(oob []byte) (time.Time, bool) {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return time.Time{}, false
	}
	for _, m := range msgs {
		if m.Header.Level == unix.SOL_SOCKET && m.Header.Type == unix.SO_TIMESTAMPNS && len(m.Data) >= 16 {
			ts := *(*unix.Timespec)(unsafePointer(m.Data))
			return time.Unix(ts.Unix()), true
		}
	}
	return time.Time{}, false
}

func unsafePointer(b []byte) unsafe.Pointer { return unsafe.Pointer(&b[0]) }
