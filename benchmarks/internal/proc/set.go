package proc

import (
	"errors"
	"sync"
	"time"
)

// Set is the processes of one benchmark run. Its zero value is ready to use; it is safe for
// concurrent use.
type Set struct {
	mu    sync.Mutex
	procs []*Process
}

// Add tracks p so that StopAll stops it.
func (s *Set) Add(p *Process) {
	s.mu.Lock()
	s.procs = append(s.procs, p)
	s.mu.Unlock()
}

// StopAll stops every tracked process, the last started first, and forgets them.
func (s *Set) StopAll(grace time.Duration) error {
	s.mu.Lock()
	procs := s.procs
	s.procs = nil
	s.mu.Unlock()
	var errs []error
	for i := len(procs) - 1; i >= 0; i-- {
		errs = append(errs, procs[i].Stop(grace))
	}
	return errors.Join(errs...)
}
