package lab

import (
	"fmt"
	"path/filepath"
	"runtime"

	"golang.org/x/sys/unix"
)

// netnsDir is where ip-netns(8) keeps its named namespaces.
const netnsDir = "/run/netns"

// InNetns runs fn on an OS thread moved into the named network namespace.
// Sockets fn creates stay in that namespace after InNetns returns, so a
// caller can listen or dial inside the lab and use the socket anywhere.
// fn must not start goroutines that create sockets: they would run on
// other threads, in the caller's namespace.
func InNetns(name string, fn func() error) error {
	runtime.LockOSThread()
	orig, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("lab: own network namespace: %w", err)
	}
	defer unix.Close(orig)
	target, err := unix.Open(filepath.Join(netnsDir, name), unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("lab: namespace %s: %w", name, err)
	}
	defer unix.Close(target)
	if err := unix.Setns(target, unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("lab: enter namespace %s: %w", name, err)
	}
	ferr := fn()
	if err := unix.Setns(orig, unix.CLONE_NEWNET); err != nil {
		// The thread stays locked and dies with this goroutine rather than
		// serve other goroutines from the wrong namespace.
		return fmt.Errorf("lab: leave namespace %s: %w", name, err)
	}
	runtime.UnlockOSThread()
	return ferr
}
