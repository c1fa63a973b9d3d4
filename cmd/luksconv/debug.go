package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/luksconv/luksconv/blobdisk"
	"github.com/luksconv/luksconv/blobio"
	"github.com/luksconv/luksconv/luksconv"
	"github.com/spf13/cobra"
)

// debugEnv turns debug logging on like --debug ("1", "true", "yes"; "0", "false", "no" or empty: off).
const debugEnv = "LUKSCONV_DEBUG"

// dlog receives the debug lines: what the tool does, never a key or a SAS signature. It discards
// everything unless --debug or LUKSCONV_DEBUG is set; setupDebug replaces it per run.
var dlog = slog.New(slog.DiscardHandler)

// debugging reports whether debug lines are written.
func debugging() bool { return dlog.Enabled(context.Background(), slog.LevelDebug) }

// debugWanted is the --debug flag, or else LUKSCONV_DEBUG.
func debugWanted(c *cobra.Command, flag bool) bool {
	if f := c.Flags().Lookup("debug"); f != nil && f.Changed {
		return flag
	}
	switch strings.ToLower(strings.TrimSpace(os.Getenv(debugEnv))) {
	case "", "0", "false", "no", "off":
		return false
	}
	return true
}

// setupDebug points dlog at w (standard error) when debugging is on, and at nothing otherwise. The
// signatures of the SAS URLs among args are removed from every line, on top of blobio.Redact.
func setupDebug(on bool, w io.Writer, args []string) {
	if !on {
		dlog = slog.New(slog.DiscardHandler)
		return
	}
	rw := &redactWriter{w: w}
	for _, a := range args {
		rw.addSAS(a)
	}
	dlog = slog.New(slog.NewTextHandler(rw, &slog.HandlerOptions{Level: slog.LevelDebug, ReplaceAttr: redactAttr}))
}

// redactAttr passes every string value, and the text of every other value, through blobio.Redact.
func redactAttr(_ []string, a slog.Attr) slog.Attr {
	switch a.Value.Kind() {
	case slog.KindString:
		a.Value = slog.StringValue(blobio.Redact(a.Value.String()))
	case slog.KindAny:
		a.Value = slog.StringValue(blobio.Redact(fmt.Sprint(a.Value.Any())))
	}
	return a
}

// redactWriter is the last line of defence: each record is redacted once more as text, and the exact
// signatures of the command line's SAS URLs (raw, escaped, decoded) are blanked wherever they appear.
type redactWriter struct {
	mu      sync.Mutex
	w       io.Writer
	secrets []string
}

func (r *redactWriter) addSAS(s string) {
	if !blobdisk.IsURL(s) {
		return
	}
	u, err := url.Parse(s)
	if err != nil {
		return
	}
	add := func(v string) {
		if len(v) >= 8 { // shorter values are not signatures and would blank ordinary text
			r.secrets = append(r.secrets, v)
		}
	}
	for k, vs := range u.Query() {
		if blobio.IsSignatureName(k) {
			for _, v := range vs {
				add(v)
				add(url.QueryEscape(v))
			}
		}
	}
	for _, kv := range strings.Split(u.RawQuery, "&") {
		if k, v, ok := strings.Cut(kv, "="); ok && blobio.IsSignatureName(k) {
			add(v)
		}
	}
}

func (r *redactWriter) Write(p []byte) (int, error) {
	s := blobio.Redact(string(p))
	for _, sec := range r.secrets {
		s = strings.ReplaceAll(s, sec, blobio.Redacted)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, err := io.WriteString(r.w, s); err != nil {
		return 0, err
	}
	return len(p), nil
}

// blobLog receives blobio's warnings and retry notices (already free of SAS signatures). Without
// --debug they are printed as they come; with it they become WARN (warnings) and DEBUG (retries)
// records.
func blobLog(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if !debugging() {
		fmt.Fprintf(os.Stderr, "luksconv: %s\n", msg)
		return
	}
	if w, ok := strings.CutPrefix(msg, "warning: "); ok {
		dlog.Warn("blob", "detail", w)
		return
	}
	dlog.Debug("blob", "detail", msg)
}

// debugSource logs an opened source: its path or redacted URL, container and size.
func debugSource(name string, src *luksconv.Source) {
	if !debugging() {
		return
	}
	dlog.Debug("source opened", "source", blobio.Redact(name), "format", src.Format, "virtual_size", src.Size,
		"file_size", src.FileSize, "allocated_extents", len(src.Allocated()))
}

// debugKeySource logs where the passphrase comes from (a path or variable name, never its bytes).
func debugKeySource(k keyFlags) {
	switch {
	case k.env != "":
		dlog.Debug("passphrase source", "from", "environment variable", "name", k.env)
	case k.file == "-":
		dlog.Debug("passphrase source", "from", "standard input")
	case k.file != "":
		dlog.Debug("passphrase source", "from", "key file", "path", k.file)
	}
}

// debugUnlock logs how NewPlan is asked to find and unlock the volume.
func debugUnlock(opts luksconv.PlanOptions) {
	if !debugging() {
		return
	}
	hdr := "attached, or ADE's on /boot"
	if opts.Header != nil {
		hdr = "detached " + opts.Header.Path
	}
	slot := "every active keyslot"
	if opts.Keyslot != nil {
		slot = fmt.Sprintf("keyslot %d only", *opts.Keyslot)
	}
	part := "find it"
	if opts.Partition > 0 {
		part = fmt.Sprint(opts.Partition)
	}
	dlog.Debug("unlocking", "header", hdr, "partition", part, "trying", slot, "format", string(opts.Format),
		"full_copy", opts.FullCopy, "keep_guest", opts.KeepGuest)
}

// debugPlan logs what NewPlan found and laid out: the LUKS header (parameters and offsets; no key
// material), the keyslot that opened, a summary of the regions, skips, patches and guest edits (path
// and reason only).
func debugPlan(p *luksconv.Plan) {
	if !debugging() {
		return
	}
	v := p.Volume
	dlog.Debug("LUKS header found", "partition", v.Partition, "partuuid", v.PartUUID, "version", v.Version,
		"header", v.Header, "header_path", v.HeaderPath, "uuid", v.UUID, "cipher", v.Cipher, "key_bits", v.KeySizeBits,
		"sector_size", v.SectorSize, "payload_offset", v.PayloadOffset, "payload_size", v.PayloadSize)
	dlog.Debug("keyslot opened", "keyslot", v.Keyslot, "plaintext", v.Content)
	n := map[luksconv.RegionKind]int{}
	for _, r := range p.Regions {
		n[r.Kind]++
	}
	dlog.Debug("plan", "id", p.ID()[:16], "format", string(p.Format), "output_size", p.OutputSize,
		"regions", len(p.Regions), "decrypt_regions", n[luksconv.Decrypt], "copy_regions", n[luksconv.Copy], "zero_regions", n[luksconv.Zero],
		"decrypt_bytes", p.Totals.Decrypt, "copy_bytes", p.Totals.Copy, "zero_bytes", p.Totals.Zero, "patches", len(p.Patches))
	for _, s := range p.Skipped {
		dlog.Debug("skip", "reason", s.Reason, "bytes", s.Bytes)
	}
	for _, e := range p.Edits {
		dlog.Debug("guest edit", "path", e.Path, "filesystem", e.Filesystem, "why", e.Why)
	}
	for _, w := range p.Warnings {
		dlog.Warn("plan", "code", string(w.Code), "warning", w.Message)
	}
}

// debugReport logs what Inspect found: the partitions and each LUKS header.
func debugReport(rep *luksconv.Report) {
	if !debugging() {
		return
	}
	for _, pt := range rep.Partitions {
		dlog.Debug("partition", "number", pt.Number, "offset", pt.Offset, "size", pt.Size, "content", string(pt.Content))
		if l := pt.LUKS; l != nil {
			dlog.Debug("LUKS header found", "partition", pt.Number, "version", l.Version, "header", l.Header,
				"header_path", l.HeaderPath, "uuid", l.UUID, "cipher", l.Cipher, "key_bits", l.KeySizeBits,
				"sector_size", l.SectorSize, "data_offset", l.DataOffset, "data_size", l.DataSize,
				"keyslots", len(l.Keyslots), "convertible", l.Convertible, "reason", l.Reason)
		}
	}
	if a := rep.ADE; a != nil {
		dlog.Debug("ADE header on /boot", "boot_partition", a.BootPartition, "path", a.HeaderPath, "size", a.HeaderSize,
			"partuuid", a.PartUUID, "named_in", a.ArgSource)
	}
	for _, e := range rep.Edits {
		dlog.Debug("guest edit", "path", e.Path, "filesystem", e.Filesystem, "why", e.Why)
	}
}

// debugProgress wraps a progress callback so that execute events are logged too, at most once a
// second and at the end.
func debugProgress(next func(luksconv.Progress)) func(luksconv.Progress) {
	if !debugging() {
		return next
	}
	var last time.Time
	return func(p luksconv.Progress) {
		if p.Final || time.Since(last) >= time.Second {
			last = time.Now()
			dlog.Debug("execute progress", "done", p.Done, "total", p.Total, "written", p.Written,
				"skipped_zero", p.Skipped, "elapsed", p.Elapsed.Round(time.Millisecond).String(), "final", p.Final)
		}
		next(p)
	}
}

// debugAzure logs one Azure control-plane call: the operation and the resource.
func debugAzure(op, resource string, args ...any) {
	dlog.Debug("azure", append([]any{"op", op, "resource", resource}, args...)...)
}
