package main

import (
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
func (k keyFlags) apply(opts *luksconv.PlanOptions, stdin io.Reader) error {
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
		if f, ok := stdin.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
			fmt.Fprint(os.Stderr, "Passphrase: ")
			p, err := term.ReadPassword(int(f.Fd()))
			fmt.Fprintln(os.Stderr)
			if err != nil {
				return err
			}
			opts.Passphrase = p
			return nil
		}
		p, err := luksconv.ReadKey(stdin, "standard input")
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
