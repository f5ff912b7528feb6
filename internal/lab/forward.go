package lab

import (
	"context"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// Forwarder makes the server's UI, which listens on the management
// network inside the lab, reachable from the machine's loopback: it
// accepts on Listen and dials To from inside namespace NS. Nothing is
// routed between the root namespace and the lab.
type Forwarder struct {
	Listen string // e.g. 127.0.0.1:9790
	NS     string
	To     string // e.g. 198.19.128.1:9780
	// Ready, if set, is called with the address listened on (Listen may
	// ask for port 0).
	Ready func(addr string)
}

// forwardingPrefix starts the line `meshlens lab forward` prints when it
// listens; the lab reads the address from it.
const forwardingPrefix = "forwarding "

// ForwardingLine is that line for addr.
func ForwardingLine(addr string) string { return forwardingPrefix + addr }

// Run forwards until ctx ends.
func (f *Forwarder) Run(ctx context.Context) error {
	ln, err := net.Listen("tcp", f.Listen)
	if err != nil {
		return fmt.Errorf("lab: forward: %w", err)
	}
	if f.Ready != nil {
		f.Ready(ln.Addr().String())
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	go func() { <-ctx.Done(); ln.Close() }()
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("lab: forward: %w", err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			f.serve(ctx, c)
		}()
	}
}

func (f *Forwarder) serve(ctx context.Context, c net.Conn) {
	defer c.Close()
	var up net.Conn
	err := InNetns(f.NS, func() error {
		var err error
		up, err = (&net.Dialer{Timeout: 5 * time.Second}).DialContext(ctx, "tcp", f.To)
		return err
	})
	if err != nil {
		return
	}
	defer up.Close()
	stop := context.AfterFunc(ctx, func() { c.Close(); up.Close() })
	defer stop()
	done := make(chan struct{})
	go func() {
		_, _ = io.Copy(up, c)
		if tc, ok := up.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
		}
		close(done)
	}()
	_, _ = io.Copy(c, up)
	c.Close()
	<-done
}
