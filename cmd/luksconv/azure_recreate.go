package main

import (
	"errors"
	"fmt"
	"io"

	"github.com/luksconv/luksconv/azure"
)

// recreateError is the CLI's error for a failed --recreate-vm step. An *azure.VMRecreateError says what
// became of the VM — not changed (the preflight refused), re-created as it was (restored), or deleted
// with its model saved in a file named in the message — and its Hint what to do next; any other error
// is a check that failed before anything was changed.
func recreateError(err error) error {
	var re *azure.VMRecreateError
	var le *azure.LicenseError
	if errors.As(err, &re) || errors.As(err, &le) {
		return err // each says what happened to the VM
	}
	return &hintedError{err, "the VM was not changed; the converted disks are kept"}
}

// printRecreated says that the VM vmID was re-created on the new disks (on names them), then what the
// re-created VM lacks or changed that a person must see to (the plan's warnings: extensions not
// re-created, a new identity principal, Backup protection, …), which otherwise only a dry run or the
// --json report would say.
func printRecreated(out io.Writer, vmID, on string, vp *azure.VMPlan) {
	fmt.Fprintf(out, "re-created VM %s on %s\n", vmID, on)
	if vp == nil {
		return
	}
	for _, w := range vp.Warnings {
		fmt.Fprintf(out, "warning: %s\n", w)
	}
}
