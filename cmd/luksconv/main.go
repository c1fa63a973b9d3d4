// Command luksconv converts Azure Disk Encryption (LUKS) disk images into plaintext disks, offline.
//
//	luksconv inspect [--header F] IMAGE
//	luksconv plan    --key-file F [--header F] IMAGE
//	luksconv convert --key-file F [--header F] [--partition N] [--format raw|vhd] IMAGE OUT
//	luksconv verify  --key-file F [--header F] IMAGE OUT
//	luksconv vm plan    --os IMAGE --key-file F [--data LUN=IMAGE --data-key LUN=F]...
//	luksconv vm convert --os IMAGE --key-file F [--data LUN=IMAGE --data-key LUN=F]... OUTDIR
//	luksconv vm verify  --os IMAGE --key-file F [--data LUN=IMAGE --data-key LUN=F]... OUTDIR
//	luksconv azure inspect (--snapshot ID | --source-disk ID)
//	luksconv azure convert (--snapshot ID | --source-disk ID) --des DES_ID --target-disk NAME [--dry-run]
//
// Exit codes are listed in the README and in exitcode.go.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/luksconv/luksconv/blobio"
	"github.com/luksconv/luksconv/internal/recovered"
	"github.com/luksconv/luksconv/luksconv"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// version is set at link time (-ldflags "-X main.version=1.2.3"); otherwise buildVersion reads the
// commit Go stamped into the binary, so a report names the code that made an output.
var version = "dev"

// buildVersion is version, or for a development build "dev (commit abcdef012345[, modified])".
func buildVersion() string {
	bi, ok := debug.ReadBuildInfo()
	if version != "dev" || !ok {
		return version
	}
	var rev, dirty string
	for _, st := range bi.Settings {
		switch st.Key {
		case "vcs.revision":
			rev = st.Value
		case "vcs.modified":
			if st.Value == "true" {
				dirty = ", modified"
			}
		}
	}
	if rev == "" {
		return version
	}
	return fmt.Sprintf("dev (commit %.12s%s)", rev, dirty)
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		// The first signal cancels the run, which then cleans up (removes a partial output, keeps a
		// journal, revokes grants); a second one is not caught any more and ends the process at once,
		// should a step not return soon enough.
		<-ctx.Done()
		stop()
	}()
	err := execute(ctx, newRootCmd())
	if err != nil {
		dlog.Debug("failed", "exit_code", exitCode(err), "error", err)
		reportError(os.Stderr, err)
	}
	if err == nil {
		dlog.Debug("done", "exit_code", 0)
	}
	os.Exit(exitCode(err))
}

// execute runs root. A panic on the command's own goroutine is an error of the run like one on a
// worker (exit 1, its stack printed without argument values; deferred clean-ups ran as it unwound):
// left to Go, it would exit 2, the usage code a fleet engine does not retry, and its trace would show
// the argument words of every frame, key bytes among them when a function takes a key by value.
func execute(ctx context.Context, root *cobra.Command) error {
	return recovered.Call(func() error { return root.ExecuteContext(ctx) })
}

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "luksconv",
		Short:         "Convert Azure Disk Encryption (LUKS) disks into plaintext disks, offline",
		Version:       buildVersion(),
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	var debug bool
	root.PersistentFlags().BoolVar(&debug, "debug", false, "write debug lines (log/slog text) about what luksconv does on standard error; never keys or SAS signatures (also: "+debugEnv+"=1)")
	root.PersistentFlags().DurationVar(&blobTimeout, "timeout", 10*time.Minute, "give up on a blob URL or managed disk (every command) once no request has succeeded for this long; 0: retry without an overall bound")
	root.PersistentPreRunE = func(c *cobra.Command, args []string) error {
		// Every argument and flag value that is a SAS URL lends its signature to the redaction.
		vals := append([]string{}, args...)
		c.Flags().Visit(func(f *pflag.Flag) { vals = append(vals, f.Value.String()) })
		setupDebug(debugWanted(c, debug), c.ErrOrStderr(), vals)
		if debugging() {
			dlog.Debug("start", "version", buildVersion(), "command", c.CommandPath(), "args", args)
		}
		// Refused here, not by the engine after the key derivation.
		if w, err := c.Flags().GetInt("workers"); err == nil && (w < 0 || w > luksconv.MaxWorkers) {
			return fmt.Errorf("%w: --workers %d: want 0 (the number of CPUs) to %d", errUsage, w, luksconv.MaxWorkers)
		}
		return nil
	}
	root.SetFlagErrorFunc(flagError)
	root.AddCommand(newInspectCmd(), newPlanCmd(), newConvertCmd(), newVerifyCmd(), newVMCmd(), newAzureCmd())
	commandGroup(root)
	return root
}

// flagError makes an error parsing c's flags a usage error.
func flagError(c *cobra.Command, err error) error {
	return fmt.Errorf("%w: %v (see %s --help)", errUsage, err, c.CommandPath())
}

// commandGroup makes c, a command that only holds subcommands, refuse an argument that names none of
// them as a usage error (exit 2, which a fleet engine does not retry). Cobra would exit 1 at the top
// level, and below it print the help and exit 0, as if a misspelt command had done its work. Alone,
// the group prints its help.
func commandGroup(c *cobra.Command) {
	c.Args = cobra.ArbitraryArgs
	c.RunE = func(c *cobra.Command, args []string) error {
		if len(args) > 0 {
			return fmt.Errorf("%w: unknown command %q for %q (see %s --help)", errUsage, args[0], c.CommandPath(), c.CommandPath())
		}
		return c.Help()
	}
}

// usageArgs rejects a wrong number of positional arguments with the usage exit code.
func usageArgs(n int) cobra.PositionalArgs {
	return func(c *cobra.Command, args []string) error {
		if len(args) != n {
			return fmt.Errorf("%w: %s takes %d argument(s), got %d (see --help)", errUsage, c.Name(), n, len(args))
		}
		return nil
	}
}

// reportError prints a failed command's error and, if there is one, its hint.
func reportError(w io.Writer, err error) {
	// Errors of the luksconv package already start with the program's name.
	// Redacted once more: a SAS URL can reach an error unredacted (cobra's "unknown command" quotes
	// an argument as it was typed).
	msg := blobio.Redact(err.Error())
	if !strings.HasPrefix(msg, "luksconv: ") {
		msg = "luksconv: " + msg
	}
	fmt.Fprintln(w, msg)
	if hint := hintFor(err); hint != "" {
		fmt.Fprintf(w, "hint: %s\n", blobio.Redact(hint))
	}
	var pe *recovered.Error
	if errors.As(err, &pe) {
		fmt.Fprintf(w, "luksconv: the panic's stack:\n%s", blobio.Redact(string(pe.Stack)))
	}
}

// hintedError carries a hint for the user beside the error.
type hintedError struct {
	err  error
	hint string
}

func (e *hintedError) Error() string { return e.err.Error() }
func (e *hintedError) Unwrap() error { return e.err }
func (e *hintedError) Hint() string  { return e.hint }
