package recovered

import (
	"errors"
	"runtime"
	"strings"
	"testing"
)

// TestCall: a panic in f comes back as an *Error with its value, the stack of the panic and, for an
// error value, that error to errors.As; an error or nil from f comes back unchanged.
func TestCall(t *testing.T) {
	err := Call(func() error {
		var m map[string]int
		m["x"] = 1 // a runtime.Error
		return nil
	})
	var pe *Error
	var re runtime.Error
	if !errors.As(err, &pe) || !errors.As(err, &re) || !strings.Contains(string(pe.Stack), "recovered.TestCall") ||
		!strings.HasPrefix(err.Error(), "internal error (panic): assignment to entry in nil map") {
		t.Fatalf("Call of a panicking f: %v", err)
	}
	if err := Call(func() error { panic("plain") }); !errors.As(err, &pe) || pe.Value != "plain" || pe.Unwrap() != nil {
		t.Errorf("panic with a string: %v", err)
	}
	want := errors.New("e")
	if err := Call(func() error { return want }); err != want {
		t.Errorf("Call of an f that fails: %v", err)
	}
	if err := Call(func() error { return nil }); err != nil {
		t.Errorf("Call of an f that succeeds: %v", err)
	}
}
