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

//go:noinline
func panicWith(secret uint64, b [2]uint64) { panic("bug") }

// TestStackHoldsNoArguments: the stack names the functions and lines, not the argument values Go
// prints, which may be key material.
func TestStackHoldsNoArguments(t *testing.T) {
	err := Call(func() error { panicWith(0x5ec7e75ec7e7, [2]uint64{0xabcdef123457, 0xabcdef123458}); return nil })
	var pe *Error
	if !errors.As(err, &pe) {
		t.Fatal(err)
	}
	s := string(pe.Stack)
	for _, secret := range []string{"5ec7e75ec7e7", "abcdef12345"} {
		if strings.Contains(s, secret) {
			t.Errorf("the stack holds an argument value %s:\n%s", secret, s)
		}
	}
	if !strings.Contains(s, "recovered.panicWith(...)") || !strings.Contains(s, "recovered_test.go:") {
		t.Errorf("the stack lost its functions or lines:\n%s", s)
	}
}
