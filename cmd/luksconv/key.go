package main

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/luksconv/luksconv/luksconv"
	"golang.org/x/term"
)

// keyFlags are the ways to give a passphrase. It is never echoed, logged or stored.
type keyFlags struct {
	file string // path, or "-" for standard input
	env  string // name of an environment variable
}

// apply puts the passphrase source into opts: a key file is named (the library reads it, and refuses
// it as an output), standard input and an environment variable are read here.
func (k keyFlags) apply(ctx context.Context, opts *luksconv.PlanOptions, stdin io.Reader) error {
	switch {
	case k.file != "" && k.env != "":
		return fmt.Errorf("%w: give either --key-file or --key-env, not both", errUsage)
	case k.env != "":
		v, ok := os.LookupEnv(k.env)
		if !ok || v == "" {
			return fmt.Errorf("%w: environment variable %s is not set", errUsage, k.env)
		}
		opts.Passphrase = []byte(v)
	case k.file == "-":
		p, err := readStdinKey(ctx, stdin)
		if err != nil {
			return err
		}
		opts.Passphrase = p
	case k.file != "":
		opts.KeyFile = k.file
	default:
		return fmt.Errorf("%w: a passphrase is needed: --key-file F (the BEK file), --key-file - (standard input) or --key-env VAR", errUsage)
	}
	return nil
}

// readStdinKey reads the passphrase from standard input (a terminal: without echo). The read does not
// stop for Ctrl-C, so it runs aside and the run ends on cancellation without waiting for it.
func readStdinKey(ctx context.Context, stdin io.Reader) ([]byte, error) {
	type result struct {
		p   []byte
		err error
	}
	ch := make(chan result, 1)
	go func() {
		if f, ok := stdin.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
			fmt.Fprint(os.Stderr, "Passphrase: ")
			p, err := term.ReadPassword(int(f.Fd()))
			fmt.Fprintln(os.Stderr)
			ch <- result{p, err}
			return
		}
		p, err := luksconv.ReadKey(stdin, "standard input")
		ch <- result{p, err}
	}()
	select {
	case r := <-ch:
		return r.p, r.err
	case <-ctx.Done():
		// A passphrase that arrives after the cancellation is wiped.
		go func() {
			if r := <-ch; r.p != nil {
				clear(r.p)
			}
		}()
		return nil, context.Cause(ctx)
	}
}
