package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"unicode"

	"github.com/luksconv/luksconv/luksconv"
)

// printWarnings prints the plan's warnings alone (what -q keeps of the plan summary).
func printWarnings(w io.Writer, warnings []luksconv.Warning) {
	for _, wn := range warnings {
		fmt.Fprintf(w, "warning: %s\n", printable(wn.Message))
	}
}

// printable escapes control characters (a GPT partition name or a file name could hold terminal
// escape sequences) so that what is printed is what the disk holds, not a command to the terminal.
func printable(s string) string {
	if strings.IndexFunc(s, unicode.IsControl) < 0 {
		return s
	}
	var b strings.Builder
	for _, r := range s {
		if unicode.IsControl(r) && r != '\t' {
			fmt.Fprintf(&b, "\\x%02x", r)
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func printReport(w io.Writer, rep *luksconv.Report) {
	fmt.Fprintf(w, "Image:  %s (%s, virtual size %s = %d bytes)\n", rep.Image.Path, rep.Image.Format, human(rep.Image.Size), rep.Image.Size)
	if rep.Table != nil {
		if rep.Table.Type == "mbr" {
			fmt.Fprintf(w, "Table:  MBR (DOS), %d-byte sectors, disk signature %s\n", rep.Table.SectorSize, rep.Table.DiskGUID)
		} else {
			fmt.Fprintf(w, "Table:  GPT, %d-byte sectors, disk GUID %s\n", rep.Table.SectorSize, rep.Table.DiskGUID)
		}
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "#\tSTART\tSIZE\tTYPE\tNAME\tCONTENT\tPARTUUID")
	for _, p := range rep.Partitions {
		typ := p.TypeName
		if typ == "" {
			typ = p.Type
		}
		fmt.Fprintf(tw, "%d\t%d\t%s\t%s\t%s\t%s\t%s\n", p.Number, p.Offset, human(p.Size), typ, printable(p.Name), p.Content, p.GUID)
	}
	tw.Flush()
	if a := rep.ADE; a != nil {
		fmt.Fprintf(w, "\nAzure Disk Encryption: /boot is partition %d and holds %s (%d bytes)", a.BootPartition, a.HeaderPath, a.HeaderSize)
		if a.PartUUID != "" {
			fmt.Fprintf(w, "; %s names the encrypted partition rd.luks.ade.partuuid=%s", a.ArgSource, a.PartUUID)
		}
		fmt.Fprintln(w)
	}
	for _, p := range rep.Partitions {
		if p.LUKS != nil {
			printLUKS(w, p.Number, p.LUKS)
		}
	}
	if len(rep.Edits) > 0 {
		fmt.Fprintln(w)
		printEdits(w, "Guest edits convert would make (without the key only unencrypted filesystems are read; plan shows all)", rep.Edits)
	}
	if rep.Readiness != nil {
		fmt.Fprintln(w)
		printReadiness(w, "Readiness (LEAPP-style, the guest as it is now)", rep.Readiness)
	}
	printWarnings(w, rep.Warnings)
}

func printLUKS(w io.Writer, n int, l *luksconv.LUKSInfo) {
	where := "header at the partition start"
	if l.Header == "detached" {
		where = "detached header " + l.HeaderPath
	}
	size := "to the end of the partition"
	if l.DataSize >= 0 {
		size = fmt.Sprintf("%d bytes", l.DataSize)
	}
	fmt.Fprintf(w, "\nPartition %d: LUKS%d (%s)\n", n, l.Version, where)
	fmt.Fprintf(w, "  uuid %s, cipher %s, %d-bit key, %d-byte sectors\n", l.UUID, l.Cipher, l.KeySizeBits, l.SectorSize)
	fmt.Fprintf(w, "  data at offset %d, %s\n", l.DataOffset, size)
	for _, k := range l.Keyslots {
		var kdf string
		switch k.KDF {
		case "pbkdf2":
			kdf = fmt.Sprintf("pbkdf2-%s, %d iterations", k.Hash, k.Iterations)
		case "":
			kdf = k.Type
		default:
			kdf = fmt.Sprintf("%s, time %d, memory %d KiB, %d threads", k.KDF, k.Time, k.MemoryKiB, k.CPUs)
		}
		fmt.Fprintf(w, "  keyslot %d: %s\n", k.ID, kdf)
	}
	if l.Convertible {
		fmt.Fprintln(w, "  convertible: yes")
	} else {
		fmt.Fprintf(w, "  convertible: no: %s\n", l.Reason)
	}
	for _, wn := range l.Warnings {
		fmt.Fprintf(w, "  warning: %s\n", printable(wn.Message))
	}
}

func printPlan(w io.Writer, p *luksconv.Plan) {
	v := p.Volume
	// Partition 0 is the whole disk; a DOS partition has no UUID.
	where := "the whole disk"
	if v.Partition != 0 {
		where = fmt.Sprintf("partition %d", v.Partition)
	}
	if v.LV != "" {
		where = fmt.Sprintf("LV %s on %s", v.LV, where)
	}
	var notes []string
	if v.PartUUID != "" {
		notes = append(notes, v.PartUUID)
	}
	if v.LV != "" {
		notes = append(notes, "an LVM PV")
	}
	if len(notes) > 0 {
		where += " (" + strings.Join(notes, ", ") + ")"
	}
	fmt.Fprintf(w, "Volume: %s, LUKS%d %s header, %s %d-bit, %d-byte sectors, unlocked with keyslot %d, plaintext holds %s\n",
		where, v.Version, v.Header, v.Cipher, v.KeySizeBits, v.SectorSize, v.Keyslot, v.Content)
	fmt.Fprintf(w, "Output: %s, %s (%d bytes): decrypt %s, copy %s, zero %s\n", p.Format, human(p.OutputSize), p.OutputSize,
		human(p.Totals.Decrypt), human(p.Totals.Copy), human(p.Totals.Zero))
	var kinds []string
	for _, r := range p.Regions {
		kinds = append(kinds, fmt.Sprintf("%s %d+%d", r.Kind, r.Offset, r.Length))
	}
	if len(kinds) <= 12 {
		fmt.Fprintf(w, "Regions: %s\n", strings.Join(kinds, ", "))
	} else {
		fmt.Fprintf(w, "Regions: %d (see --json)\n", len(kinds))
	}
	for _, sk := range p.Skipped {
		fmt.Fprintf(w, "Skip: %s of %s (written as zeros, not read)\n", human(sk.Bytes), sk.Reason)
	}
	if len(p.Patches) <= 12 {
		for _, pt := range p.Patches {
			fmt.Fprintf(w, "Patch: %d bytes at %d: %s\n", pt.Length, pt.Offset, pt.Why)
		}
	} else {
		var n int64
		for _, pt := range p.Patches {
			n += int64(pt.Length)
		}
		fmt.Fprintf(w, "Patches: %d, %s in total (see --json)\n", len(p.Patches), human(n))
	}
	if len(p.Edits) > 0 {
		printEdits(w, "Guest edits", p.Edits)
	}
	if p.Readiness != nil {
		printReadiness(w, "Readiness (LEAPP-style, the guest as the output will hold it)", p.Readiness)
	}
	printWarnings(w, p.Warnings)
}

func printEdits(w io.Writer, title string, edits []luksconv.Edit) {
	fmt.Fprintf(w, "%s: %d\n", title, len(edits))
	for _, e := range edits {
		fmt.Fprintf(w, "  %s [%s]: %s\n", printable(e.Path), e.Filesystem, printable(e.Why))
		for _, l := range e.Before {
			fmt.Fprintf(w, "    - %s\n", printable(l))
		}
		for _, l := range e.After {
			fmt.Fprintf(w, "    + %s\n", printable(l))
		}
	}
}

func printReadiness(w io.Writer, title string, r *luksconv.Readiness) {
	verdict := "ready"
	if !r.Ready {
		verdict = "NOT ready"
	}
	fmt.Fprintf(w, "%s: %s\n", title, verdict)
	for _, c := range r.Checks {
		fmt.Fprintf(w, "  %-4s %s\n", strings.ToUpper(c.Status), c.Name)
		for _, d := range c.Detail {
			fmt.Fprintf(w, "         %s\n", d)
		}
	}
}

func printVerify(w io.Writer, name string, rep *luksconv.VerifyReport) {
	verdict := "PASS"
	if !rep.Pass {
		verdict = "FAIL"
	}
	fmt.Fprintf(w, "Verify %s: %s\n", name, verdict)
	fmt.Fprintf(w, "  checked: decrypt %s, copy %s, zero %s (%s of patches) in %s\n", human(rep.Checked.Decrypt),
		human(rep.Checked.Copy), human(rep.Checked.Zero), human(rep.Patched), rep.Duration.Round(1e6))
	if rep.MismatchCount > 0 {
		fmt.Fprintf(w, "  mismatches: %d ranges, %d bytes\n", rep.MismatchCount, rep.MismatchBytes)
		for _, m := range rep.Mismatches {
			fmt.Fprintf(w, "    %d+%d in the %s region at %d", m.Offset, m.Length, m.Kind, m.Region)
			if m.Reason != "" {
				fmt.Fprintf(w, " (%s)", m.Reason)
			}
			if m.Partition != 0 {
				fmt.Fprintf(w, ", partition %d", m.Partition)
			}
			if m.Patch != "" {
				fmt.Fprintf(w, ", patch: %s", m.Patch)
			}
			fmt.Fprintln(w)
		}
		if n := rep.MismatchCount - len(rep.Mismatches); n > 0 {
			fmt.Fprintf(w, "    ... and %d more\n", n)
		}
	}
	for _, c := range rep.Structure {
		st := "ok"
		if !c.OK {
			st = "FAIL"
		}
		fmt.Fprintf(w, "  %-4s %s: %s\n", st, c.Name, c.Detail)
	}
}
