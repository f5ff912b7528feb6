package testkit

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"
)

// fatalRecorder records Fatalf instead of ending the test; CheckFor's
// Fatalf is its last statement, so returning is what ending would do.
type fatalRecorder struct {
	testing.TB
	msg string
}

func (r *fatalRecorder) Helper() {}
func (r *fatalRecorder) Fatalf(format string, args ...any) {
	r.msg = fmt.Sprintf(format, args...)
}

func TestCheckFor(t *testing.T) {
	for _, tc := range []struct {
		name     string
		okAfter  int // calls until fn holds; 0 never
		wantFail string
	}{
		{"holds at once", 1, ""},
		{"holds after a few polls", 4, ""},
		{"never holds: the last reason is reported", 0, "not within 30ms: still 2 short"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := &fatalRecorder{TB: t}
			calls := 0
			CheckFor(r, 30*time.Millisecond, time.Millisecond, func() error {
				calls++
				if tc.okAfter > 0 && calls >= tc.okAfter {
					return nil
				}
				if calls > 1 {
					return errors.New("still 2 short")
				}
				return errors.New("first")
			})
			if tc.wantFail == "" && (r.msg != "" || calls != tc.okAfter) {
				t.Errorf("failed %q after %d calls, want success after %d", r.msg, calls, tc.okAfter)
			}
			if tc.wantFail != "" && !strings.Contains(r.msg, tc.wantFail) {
				t.Errorf("failure %q, want %q", r.msg, tc.wantFail)
			}
		})
	}
}

func TestFixedPort(t *testing.T) {
	ips := []string{"127.0.9.1", "127.0.9.2"}
	port := FixedPort(t, ips...)
	if port < 20000 || port >= 30000 {
		t.Fatalf("port %d outside 20000-29999", port)
	}
	// Free on every address, for both transports: bind them all.
	for _, ip := range ips {
		addr := net.JoinHostPort(ip, strconv.Itoa(port))
		l, err := net.Listen("tcp4", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		pc, err := net.ListenPacket("udp4", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer pc.Close()
	}
	if portFree(port, ips) {
		t.Error("a bound port reported free")
	}
}
