//go:build !linux

package probe

import "net"

func deferAccept(*net.TCPListener, int) error { return nil }

func newUDP4Stamped(*net.UDPConn) (udpConn, bool) { return nil, false }
