package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/luksconv/luksconv/luks"
	"golang.org/x/term"
)

// keyFlags are the ways to give a passphrase. It is never echoed, logged or stored.
type keyFlags struct {
	file string // path, or "-" for standard input
	env  string // name of an environment variable
}

// maxKeyFile bounds what a key file may be; cryptsetup's default limit is 8 MiB.
const maxKeyFile = 8 << 20

// read returns the passphrase: the exact bytes of the key file, as cryptsetup --key-file reads them.
func (k keyFlags) read(stdin io.Reader) ([]byte, error) {
	switch {
	case k.file != "" && k.env != "":
		return nil, fmt.Errorf("%w: give either --key-file or --key-env, not both", errUsage)
	case k.env != "":
		v, ok := os.LookupEnv(k.env)
		if !ok || v == "" {
			return nil, fmt.Errorf("%w: environment variable %s is not set", errUsage, k.env)
		}
		return []byte(v), nil
	case k.file == "-":
		if f, ok := stdin.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
			fmt.Fprint(os.Stderr, "Passphrase: ")
			p, err := term.ReadPassword(int(f.Fd()))
			fmt.Fprintln(os.Stderr)
			return p, err
		}
		return readBounded(stdin, "standard input")
	case k.file != "":
		f, err := os.Open(k.file)
		if err != nil {
			return nil, fmt.Errorf("%w: key file: %v", errUsage, err)
		}
		defer f.Close()
		return readBounded(f, k.file)
	}
	return nil, fmt.Errorf("%w: a passphrase is needed: --key-file F (the BEK file), --key-file - (standard input) or --key-env VAR", errUsage)
}

func readBounded(r io.Reader, name string) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, maxKeyFile+1))
	if err != nil {
		clear(b)
		return nil, fmt.Errorf("reading the key from %s: %w", name, err)
	}
	if len(b) > maxKeyFile {
		clear(b)
		return nil, fmt.Errorf("%w: key from %s is larger than %d bytes", errUsage, name, maxKeyFile)
	}
	if len(b) == 0 {
		return nil, fmt.Errorf("%w: key from %s is empty", errUsage, name)
	}
	return b, nil
}

// explainKeyError adds the likely cause of a wrong passphrase.
func explainKeyError(err error, pass []byte) error {
	if !errors.Is(err, luks.ErrWrongPassphrase) {
		return err
	}
	switch {
	case bytes.HasSuffix(pass, []byte("\n")):
		return &hintedError{err, "the key ends with a newline; ADE's BEK file has none, and the whole file is the " +
			"passphrase (e.g. `echo` added one: use `printf %s` or `echo -n`)"}
	case len(pass) != 172:
		return &hintedError{err, fmt.Sprintf("the key is %d bytes; an ADE BEK passphrase is 172 base64 characters", len(pass))}
	}
	return &hintedError{err, "check that the key belongs to this disk (its Key Vault secret, and the header from the same disk)"}
}
