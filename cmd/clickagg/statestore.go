package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"

	"github.com/clickagg/clickagg/internal/backoff"
	"github.com/clickagg/clickagg/state"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

// The state store is a cache of PostgreSQL: a damaged one is quarantined
// and rebuilt, a full volume is freed of it, and a volume that still
// refuses the store ends the process with exitState after a bounded number
// of tries, for an orchestrator (and a person) to see.
const (
	stateTries    = 5 // opens before giving up on the volume
	stateRestarts = 3 // pipeline restarts after a store failure while running
)

// stateBackoff paces the opens: 1+2+4+8 s in all, without jitter, as the
// README states ("5 tries over 15 s").
func stateBackoff() backoff.Backoff {
	return backoff.Backoff{Base: time.Second, Max: 8 * time.Second, NoJitter: true}
}

// stateStore opens and, when it fails, replaces the state store.
type stateStore struct {
	opts     state.Options
	identity string
	log      *zap.Logger

	up        prometheus.Gauge
	discarded *prometheus.CounterVec
}

func newStateStore(opts state.Options, identity string, log *zap.Logger, reg prometheus.Registerer) *stateStore {
	s := &stateStore{opts: opts, identity: identity, log: log,
		up: prometheus.NewGauge(prometheus.GaugeOpts{Name: "clickagg_state_store_up",
			Help: "1 while the local state store is usable; 0 while it is being replaced or its volume refuses it."}),
		discarded: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "clickagg_state_store_discarded_total",
			Help: "Local state stores thrown away and rebuilt from PostgreSQL, by reason (corrupt, full)."}, []string{"reason"}),
	}
	reg.MustRegister(s.up, s.discarded)
	return s
}

// open returns a usable store. A damaged store is quarantined (one copy
// kept in state_dir/quarantine) and a fresh one opened in its place; a full
// volume is freed of the store; any other refusal of the volume is retried
// with backoff. After stateTries the error wraps state.ErrUnusable.
func (s *stateStore) open(ctx context.Context) (*state.Store, error) {
	var err error
	wait := stateBackoff()
	for try := 1; try <= stateTries; try++ {
		if err = os.MkdirAll(s.opts.Dir, 0o750); err == nil {
			var st *state.Store
			st, err = state.Open(s.opts, s.identity)
			if err == nil {
				s.up.Set(1)
				return st, nil
			}
		}
		s.up.Set(0)
		if s.discard(err) {
			continue // NB: a fresh store needs no wait
		}
		if errors.Is(err, state.ErrUnusable) && !errors.Is(err, state.ErrRestart) && try < stateTries {
			d := wait.Next()
			s.log.Error("state volume unusable; retrying", zap.String("state_dir", s.opts.Dir),
				zap.Int("try", try), zap.Int("tries", stateTries), zap.Duration("backoff", d), zap.Error(err))
			if err := backoff.Sleep(ctx, d); err != nil {
				return nil, err
			}
			continue
		}
		break
	}
	if !errors.Is(err, state.ErrUnusable) {
		err = fmt.Errorf("%w: %w", state.ErrUnusable, err)
	}
	return nil, fmt.Errorf("state dir %s: %w", s.opts.Dir, err)
}

// failed handles a store that failed while running (st.Err() != nil): it
// closes it and discards it. It returns whether a fresh store may be opened
// in this process; otherwise the process must exit (Pebble may still hold
// the failed one).
func (s *stateStore) failed(st *state.Store) bool {
	err := st.Err()
	s.up.Set(0)
	_ = st.Close()
	s.discard(err)
	return errors.Is(err, state.ErrCorrupt)
}

// discard throws the store away when err says it is damaged or filled the
// volume, and reports whether it did.
func (s *stateStore) discard(err error) bool {
	reason, keep := "", false
	switch {
	case errors.Is(err, state.ErrCorrupt):
		reason, keep = "corrupt", true
	case errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EDQUOT):
		reason = "full"
	default:
		return false
	}
	if derr := state.Discard(s.opts.Dir, keep); derr != nil {
		s.log.Error("cannot discard the state store", zap.String("state_dir", s.opts.Dir), zap.Error(derr))
		return false
	}
	s.discarded.WithLabelValues(reason).Inc()
	msg := "state store damaged: moved to " + state.QuarantineDir + "/ (replacing an older one); partitions rebuild from PostgreSQL"
	if !keep {
		msg = "state volume full: state store removed to free it; partitions rebuild from PostgreSQL"
	}
	s.log.Error(msg, zap.String("state_dir", s.opts.Dir), zap.Error(err))
	return true
}
