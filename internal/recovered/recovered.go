// Package recovered turns a panic on a goroutine that a library or the command starts into an error
// of the call that started it. Left alone, such a panic ends the whole process with Go's exit code 2
// (the CLI's usage code, which a fleet engine takes as permanent) and skips every clean-up of the run:
// a partial output left behind, grants not revoked.
package recovered

import (
	"bytes"
	"fmt"
	"runtime/debug"
)

// Error is a recovered panic: its value and the stack of the goroutine that panicked. Error() holds
// the value only (it reaches reports); the stack is for standard error or a debug log.
type Error struct {
	Value any    // what panic was called with
	Stack []byte // debug.Stack() of the panicking goroutine, without the argument values
}

func (e *Error) Error() string { return fmt.Sprintf("internal error (panic): %v", e.Value) }

// Unwrap is the panic value when it is an error (a runtime.Error, say), so that errors.Is and As see it.
func (e *Error) Unwrap() error {
	err, _ := e.Value.(error)
	return err
}

// Catch recovers a panic and hands it to fail as an *Error. It must be deferred itself
// (defer recovered.Catch(fail)), not called from a deferred function: recover works only there.
func Catch(fail func(error)) {
	if r := recover(); r != nil {
		fail(&Error{Value: r, Stack: stripArgs(debug.Stack())})
	}
}

// stripArgs replaces the argument values of each function line of a goroutine's stack with "...":
// Go prints the words of arguments passed by value, which may be key material.
func stripArgs(stack []byte) []byte {
	lines := bytes.Split(stack, []byte("\n"))
	for i, l := range lines {
		if len(l) == 0 || l[0] == '\t' || !bytes.HasSuffix(l, []byte(")")) {
			continue // a file:line, the goroutine header or "created by ..."
		}
		// The arguments are the last parenthesised group: their values hold no parenthesis.
		if j := bytes.LastIndexByte(l, '('); j > 0 {
			lines[i] = append(l[:j:j], "(...)"...)
		}
	}
	return bytes.Join(lines, []byte("\n"))
}

// Call runs f and returns its error, or a panic in f as an *Error.
func Call(f func() error) (err error) {
	defer Catch(func(e error) { err = e })
	return f()
}
