package yamlfile

import (
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"
)

// MaxConfigBytes bounds configuration files that are not topologies (SLOs,
// scenarios, alerting, tokens): the largest real one is a few kilobytes.
const MaxConfigBytes = 4 << 20

// ErrNotRegular and ErrTooLarge are why ReadFile refuses a file.
var (
	ErrNotRegular = errors.New("not a regular file")
	ErrTooLarge   = errors.New("file too large")
)

// ReadFile reads a configuration file of at most max bytes; its errors do
// not repeat the path (callers say what they were reading). It refuses
// anything but a regular file (after following symlinks): /dev/zero would
// be read forever and a FIFO would block the reader until a writer came.
// The file is opened without blocking and checked on the open descriptor,
// so a path re-linked between a check and the read cannot slip through,
// and the read stops at max+1 bytes whatever the file claims its size is
// (it may grow while being read).
func ReadFile(path string, max int64) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%w (%s)", ErrNotRegular, describeMode(st.Mode()))
	}
	if st.Size() > max {
		return nil, fmt.Errorf("%w: %d bytes, at most %d", ErrTooLarge, st.Size(), max)
	}
	data, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > max {
		return nil, fmt.Errorf("%w: more than %d bytes", ErrTooLarge, max)
	}
	return data, nil
}

func describeMode(m os.FileMode) string {
	switch {
	case m.IsDir():
		return "a directory"
	case m&os.ModeNamedPipe != 0:
		return "a FIFO"
	case m&os.ModeCharDevice != 0:
		return "a character device"
	case m&os.ModeDevice != 0:
		return "a device"
	case m&os.ModeSocket != 0:
		return "a socket"
	}
	return "mode " + m.String()
}
