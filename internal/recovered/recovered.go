// Package recovered turns a panic on a goroutine that a library or the command starts into an error
// of the call that started it. Left alone, such a panic ends the whole process with Go's exit code 2
// (the CLI's usage code, which a fleet engine takes as permanent) and skips every clean-up of the run:
// a partial output left behind, grants not revoked.
package recovered

import (
	"fmt"
	"runtime/debug"
)

// Error is a recovered panic: its value and the stack of the goroutine that panicked. Error() holds
// the value only (it reaches reports); the stack is for standard error or a debug log.
type Error struct {
	Value any    // what panic was called with
	Stack []byte // debug.Stack() of the panicking goroutine
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
		fail(&Error{Value: r, Stack: debug.Stack()})
	}
}

// Call runs f and returns its error, or a panic in f as an *Error.
func Call(f func() error) (err error) {
	defer Catch(func(e error) { err = e })
	return f()
}
