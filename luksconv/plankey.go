package luksconv

import (
	"context"
	"sync"

	"github.com/luksconv/luksconv/luks"
)

// planKey holds a plan's decrypting reader (the unlocked key schedule) for the Execute and Verify
// calls that use it, so that Close can run while they do: it stops them and drops the key when the
// last one returns.
type planKey struct {
	mu      sync.Mutex
	rd      *luks.Reader // nil once dropped
	closed  bool
	users   int
	cancels map[int]context.CancelCauseFunc
	next    int
}

// use registers a user of p's key. It returns a context that ends when ctx does or when the plan is
// closed (context.Cause is then ErrPlanClosed), the reader, and a release func to call when done.
func (p *Plan) use(ctx context.Context) (context.Context, *luks.Reader, func(), error) {
	k := p.key
	if k == nil {
		return nil, nil, nil, ErrPlanClosed // decoded from JSON
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.closed || k.rd == nil {
		return nil, nil, nil, ErrPlanClosed
	}
	ctx, cancel := context.WithCancelCause(ctx)
	if k.cancels == nil {
		k.cancels = map[int]context.CancelCauseFunc{}
	}
	id := k.next
	k.next++
	k.cancels[id] = cancel
	k.users++
	release := func() {
		cancel(nil)
		k.mu.Lock()
		defer k.mu.Unlock()
		delete(k.cancels, id)
		if k.users--; k.users == 0 && k.closed {
			k.rd = nil
		}
	}
	return ctx, k.rd, release, nil
}

// close stops the users and drops the key now, or when the last user releases it.
func (k *planKey) close() {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.closed = true
	for _, cancel := range k.cancels {
		cancel(ErrPlanClosed)
	}
	if k.users == 0 {
		k.rd = nil
	}
}
