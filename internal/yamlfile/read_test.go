package yamlfile

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func TestReadFileRefusesWhatIsNotABoundedRegularFile(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	ok := filepath.Join(dir, "ok.yaml")
	if err := os.WriteFile(ok, []byte("name: a\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	big := filepath.Join(dir, "big.yaml")
	if err := os.WriteFile(big, []byte(strings.Repeat("#", 101)), 0o600); err != nil {
		t.Fatal(err)
	}
	relinked := filepath.Join(dir, "relinked.yaml") // a config re-linked to /dev/zero
	if err := os.Symlink("/dev/zero", relinked); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, path string
		want       error
		text       string
	}{
		{"regular", ok, nil, ""},
		{"FIFO", fifo, ErrNotRegular, "a FIFO"},
		{"/dev/zero", "/dev/zero", ErrNotRegular, "a character device"},
		{"symlink to /dev/zero", relinked, ErrNotRegular, "a character device"},
		{"directory", dir, ErrNotRegular, "a directory"},
		{"over the limit", big, ErrTooLarge, "101 bytes, at most 100"},
		// procfs files are regular and claim size 0: the read itself is
		// bounded.
		{"larger than its stated size", "/proc/self/status", ErrTooLarge, "more than 100 bytes"},
		{"missing", filepath.Join(dir, "nope"), os.ErrNotExist, "no such file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data, err := ReadFile(tc.path, 100)
			if !errors.Is(err, tc.want) || (err != nil && !strings.Contains(err.Error(), tc.text)) {
				t.Fatalf("err = %v, want %v (%s)", err, tc.want, tc.text)
			}
			if err == nil && string(data) != "name: a\n" {
				t.Fatalf("read %q", data)
			}
		})
	}
}
