package luksconv

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"syscall"
)

// MaxKeyFile bounds a key file, as cryptsetup's default --keyfile-size limit does (8 MiB).
const MaxKeyFile = 8 << 20

// adeKeyLen is the length of an ADE BEK passphrase: 172 base64 characters, no newline.
const adeKeyLen = 172

// ReadKeyFile returns the passphrase in a key file: its exact bytes, as cryptsetup --key-file reads
// them (ADE's BEK file holds 172 base64 characters and no newline). Only a regular file is read: a
// FIFO could block forever and a directory holds no key. An empty file, a file larger than
// MaxKeyFile and anything but a regular file give an error wrapping ErrKeyFile, as does a path that
// does not exist; any other error reaching the file (a share's EIO or ESTALE) is returned as such, so
// that a caller may try again. The caller should clear the result when done.
func ReadKeyFile(path string) ([]byte, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, keyFileError(err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%w: %s is not a regular file (%s)", ErrKeyFile, path, fi.Mode().Type())
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, keyFileError(err)
	}
	defer f.Close()
	return ReadKey(f, path)
}

// keyFileError is err from reaching a key file: ErrKeyFile when the path does not exist or runs
// through a non-directory, else the error itself.
func keyFileError(err error) error {
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
		return fmt.Errorf("%w: %v", ErrKeyFile, err)
	}
	return fmt.Errorf("key file: %w", err)
}

// ReadKey reads a passphrase from r (standard input, say), named name in errors, with the bounds of
// ReadKeyFile.
func ReadKey(r io.Reader, name string) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, MaxKeyFile+1))
	if err != nil {
		clear(b)
		return nil, fmt.Errorf("reading the key from %s: %w", name, err)
	}
	if len(b) > MaxKeyFile {
		clear(b)
		return nil, fmt.Errorf("%w: the key from %s is larger than %d bytes", ErrKeyFile, name, MaxKeyFile)
	}
	if len(b) == 0 {
		return nil, fmt.Errorf("%w: the key from %s is empty", ErrKeyFile, name)
	}
	return b, nil
}

// PassphraseError is NewPlan's error when no keyslot opens with the passphrase. It wraps
// luks.ErrWrongPassphrase. Hint says what is likely wrong, judged from the passphrase's shape alone
// (it never quotes the passphrase).
type PassphraseError struct {
	Err  error  // luks.ErrWrongPassphrase, or an error wrapping it
	Hint string // a likely cause, for people ("" when none is guessed)
}

// Error returns the message of the underlying error.
func (e *PassphraseError) Error() string { return e.Err.Error() }

// Unwrap returns the underlying error (luks.ErrWrongPassphrase).
func (e *PassphraseError) Unwrap() error { return e.Err }

// passphraseHint guesses why pass opens nothing: a newline added by echo, or a key that is not an ADE
// BEK.
func passphraseHint(pass []byte) string {
	switch {
	case bytes.HasSuffix(pass, []byte("\n")):
		return "the key ends with a newline; ADE's BEK file has none, and the whole file is the passphrase " +
			"(e.g. `echo` added one: use `printf %s` or `echo -n`)"
	case len(pass) != adeKeyLen:
		return fmt.Sprintf("the key is %d bytes; an ADE BEK passphrase is %d base64 characters", len(pass), adeKeyLen)
	}
	return "check that the key belongs to this disk (its Key Vault secret, and the header from the same disk)"
}

// decodeBase64Key decodes a key that an old ADE build base64-encoded before wrapping, without a
// string copy that could not be cleared.
func decodeBase64Key(b []byte) ([]byte, error) {
	b = bytes.TrimRight(b, "=")
	out := make([]byte, base64.RawStdEncoding.DecodedLen(len(b)))
	n, err := base64.RawStdEncoding.Decode(out, b)
	if err != nil {
		clear(out)
		return nil, err
	}
	return out[:n], nil
}
