package azurefake

import (
	"context"
	"net/http"
	"strings"

	azfake "github.com/Azure/azure-sdk-for-go/sdk/azcore/fake"
)

// pollSuffix ends the path of every poll of an operation the SDK fake serves: the path of the request
// that started it, then this.
const pollSuffix = "/get/fake/status"

// pathKey is the context key under which the router passes a request's path to the fake servers,
// which see only its parameters: it names the operation the request starts, as its polls do.
type pathKey struct{}

// slowOp is an operation Slow made slow: the polls left until it ends, and what it does then.
type slowOp struct {
	call   string
	left   int
	effect func()
}

// later carries out effect, what the operation call (started by the request of ctx) does: now, or when
// Slow makes it slow, at its poll after the n "in progress" answers it adds to resp (or at Settle).
// The caller holds the lock and has added one "in progress" answer of its own.
func later[R any](ctx context.Context, c *Cloud, call string, resp *azfake.PollerResponder[R], effect func()) {
	n := 0
	if c.Slow != nil {
		n = c.Slow(call)
	}
	path, _ := ctx.Value(pathKey{}).(string)
	if n <= 0 || path == "" {
		effect()
		return
	}
	for range n {
		resp.AddNonTerminalResponse(http.StatusAccepted, nil)
	}
	if c.slow == nil {
		c.slow = map[string]*slowOp{}
	}
	// The request itself got the caller's answer; polls 1..n get these, poll n+1 the end.
	c.slow[path] = &slowOp{call: call, left: n + 1, effect: effect}
}

// polled counts a poll of the request path p (which ends in pollSuffix) against a slow operation,
// which takes effect at its last. The caller holds the lock.
func (c *Cloud) polled(p string) {
	p = strings.TrimSuffix(p, pollSuffix)
	if op := c.slow[p]; op != nil {
		if c.Polled != nil {
			c.Polled(op.call)
		}
		if op.left--; op.left <= 0 {
			delete(c.slow, p)
			op.effect()
		}
	}
}

// Settle carries out every operation Slow made slow that no client polled to its end, as Azure ends
// an operation whether or not anyone still waits for it. Their pollers are forgotten: the next call
// of such an operation starts anew.
func (c *Cloud) Settle() {
	c.Lock()
	defer c.Unlock()
	for p, op := range c.slow {
		delete(c.slow, p)
		op.effect()
	}
	c.settled = true
}

// InFlight is how many operations Slow made slow have not ended.
func (c *Cloud) InFlight() int {
	c.Lock()
	defer c.Unlock()
	return len(c.slow)
}
