package agent

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// The spool is a directory:
//
//	state.json                {"epoch": E, "seq": S}: the agent's incarnation and last sealed seq
//	batches/<seq:020d>.batch  one wire-encoded batch per file, written whole (tmp + fsync + rename)
//	pinglist.json, fleet.key  the last pinglist and fleet key, so the agent probes while the bus is away
//
// A batch file exists from the moment its batch is sealed until JetStream
// acknowledges it: an acknowledged result is never lost, and one not yet
// acknowledged survives a crash and is published again with the same id.
// The epoch is drawn once, when the directory is first used, so a wiped
// spool never reuses (epoch, seq) ids.
const (
	stateFile    = "state.json"
	batchesDir   = "batches"
	batchSuffix  = ".batch"
	pinglistFile = "pinglist.json"
	fleetKeyFile = "fleet.key"
)

// spoolEntry is one sealed, unacknowledged batch. data is set only for
// batches the disk refused: they wait in memory instead.
type spoolEntry struct {
	seq  uint64
	size int64
	data []byte
}

type spoolState struct {
	Epoch uint64 `json:"epoch"`
	Seq   uint64 `json:"seq"`
}

// spool is safe for concurrent use: the sealer appends, the publisher
// reads and removes.
type spool struct {
	dir      string
	maxBytes int64
	epoch    uint64
	m        *metrics

	mu      sync.Mutex
	lastSeq uint64
	entries []spoolEntry // ascending seq
	bytes   int64        // on disk
	memory  int64        // in memory (disk refused them)
	notify  chan struct{}
}

func openSpool(dir string, maxBytes int64, m *metrics) (*spool, error) {
	if err := os.MkdirAll(filepath.Join(dir, batchesDir), 0o750); err != nil {
		return nil, fmt.Errorf("agent: spool %q: %w", dir, err)
	}
	s := &spool{dir: dir, maxBytes: maxBytes, m: m, notify: make(chan struct{}, 1)}
	st, err := s.readState()
	switch {
	case errors.Is(err, fs.ErrNotExist):
		var b [8]byte
		if _, err := rand.Read(b[:]); err != nil {
			return nil, fmt.Errorf("agent: spool %q: draw epoch: %w", dir, err)
		}
		// Keep epochs positive and readable in logs; zero means unset.
		st = spoolState{Epoch: binary.BigEndian.Uint64(b[:])>>1 | 1}
		if err := s.writeState(st); err != nil {
			return nil, err
		}
	case err != nil:
		return nil, err
	}
	s.epoch, s.lastSeq = st.Epoch, st.Seq
	names, err := os.ReadDir(filepath.Join(dir, batchesDir))
	if err != nil {
		return nil, fmt.Errorf("agent: spool %q: %w", dir, err)
	}
	for _, d := range names {
		name := d.Name()
		path := filepath.Join(dir, batchesDir, name)
		if !strings.HasSuffix(name, batchSuffix) {
			// A tmp file of a write that a crash cut short: its batch was
			// never sealed, so never published.
			os.Remove(path)
			continue
		}
		seq, err := strconv.ParseUint(strings.TrimSuffix(name, batchSuffix), 10, 64)
		info, ierr := d.Info()
		if err != nil || ierr != nil || seq == 0 {
			m.spoolErrors.Inc()
			continue
		}
		s.entries = append(s.entries, spoolEntry{seq: seq, size: info.Size()})
		s.bytes += info.Size()
		// The batch file is written before the state: after a crash in
		// between, the file knows the last seq.
		s.lastSeq = max(s.lastSeq, seq)
	}
	slices.SortFunc(s.entries, func(a, b spoolEntry) int { return cmpUint(a.seq, b.seq) })
	m.spoolBytes.Set(float64(s.bytes))
	return s, nil
}

func cmpUint(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func (s *spool) readState() (spoolState, error) {
	path := filepath.Join(s.dir, stateFile)
	b, err := os.ReadFile(path)
	if err != nil {
		return spoolState{}, fmt.Errorf("agent: spool state: %w", err)
	}
	st, err := parseState(b)
	if err != nil {
		return st, fmt.Errorf("agent: spool state %q: %w: move the spool aside to start a new epoch", path, err)
	}
	return st, nil
}

// parseState reads state.json.
func parseState(b []byte) (spoolState, error) {
	var st spoolState
	if err := json.Unmarshal(b, &st); err != nil {
		return st, fmt.Errorf("corrupt: %w", err)
	}
	if st.Epoch == 0 {
		return st, errors.New("corrupt: no epoch")
	}
	return st, nil
}

func (s *spool) writeState(st spoolState) error {
	b, _ := json.Marshal(st)
	return writeFileAtomic(filepath.Join(s.dir, stateFile), b, 0o640)
}

// writeFileAtomic writes a whole file or nothing: tmp, fsync, rename,
// fsync of the directory.
func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, perm)
	if err != nil {
		return fmt.Errorf("agent: write %q: %w", path, err)
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("agent: write %q: %w", path, err)
	}
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		err = d.Sync()
		d.Close()
		if err != nil {
			return fmt.Errorf("agent: sync dir of %q: %w", path, err)
		}
	}
	return nil
}

func (s *spool) batchPath(seq uint64) string {
	return filepath.Join(s.dir, batchesDir, fmt.Sprintf("%020d%s", seq, batchSuffix))
}

// seal assigns the next seq, has build encode the batch with it, and
// stores the result before anyone may publish it. When the disk refuses,
// the batch waits in memory (counted in spool errors) and the agent keeps
// probing and publishing.
func (s *spool) seal(build func(epoch, seq uint64) ([]byte, error)) (uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	seq := s.lastSeq + 1
	data, err := build(s.epoch, seq)
	if err != nil {
		return 0, err
	}
	s.lastSeq = seq
	size := int64(len(data))
	s.makeRoomLocked(size)
	e := spoolEntry{seq: seq, size: size}
	if err := writeFileAtomic(s.batchPath(seq), data, 0o640); err != nil {
		s.m.spoolErrors.Inc()
		e.data = data
		s.memory += size
	} else {
		s.bytes += size
		s.m.batchesSpooled.Inc()
	}
	// The seq must be durable before the batch can be acknowledged:
	// reusing it after a restart would make JetStream drop a new batch as
	// a duplicate of an old one.
	if err := s.writeState(spoolState{Epoch: s.epoch, Seq: seq}); err != nil {
		s.m.spoolErrors.Inc()
	}
	s.entries = append(s.entries, e)
	s.m.spoolBytes.Set(float64(s.bytes))
	select {
	case s.notify <- struct{}{}:
	default:
	}
	return seq, nil
}

// makeRoomLocked drops the oldest batches until size more bytes fit.
func (s *spool) makeRoomLocked(size int64) {
	for len(s.entries) > 0 && s.bytes+s.memory+size > s.maxBytes {
		old := s.entries[0]
		s.entries = s.entries[1:]
		s.forgetLocked(old)
		s.m.spoolDropped.Inc()
	}
}

func (s *spool) forgetLocked(e spoolEntry) {
	if e.data != nil {
		s.memory -= e.size
		return
	}
	if err := os.Remove(s.batchPath(e.seq)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		s.m.spoolErrors.Inc()
	}
	s.bytes -= e.size
	s.m.spoolBytes.Set(float64(s.bytes))
}

// oldest returns the first unacknowledged batch and its bytes.
func (s *spool) oldest() (uint64, []byte, bool) {
	for {
		s.mu.Lock()
		if len(s.entries) == 0 {
			s.mu.Unlock()
			return 0, nil, false
		}
		e := s.entries[0]
		s.mu.Unlock()
		if e.data != nil {
			return e.seq, e.data, true
		}
		data, err := os.ReadFile(s.batchPath(e.seq))
		if err == nil {
			return e.seq, data, true
		}
		// Unreadable: it cannot be published, ever. Count it and move on
		// rather than block every later batch behind it.
		s.m.spoolErrors.Inc()
		s.remove(e.seq)
	}
}

// remove forgets an acknowledged (or unreadable) batch.
func (s *spool) remove(seq uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, e := range s.entries {
		if e.seq == seq {
			s.entries = slices.Delete(s.entries, i, i+1)
			s.forgetLocked(e)
			return
		}
	}
}

func (s *spool) pending() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.entries)
}
