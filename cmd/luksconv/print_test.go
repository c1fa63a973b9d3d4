package main

import (
	"strings"
	"testing"

	"github.com/luksconv/luksconv/luksconv"
)

// TestPrintableReport: a partition name holding terminal escape sequences is printed escaped, never as
// raw control bytes.
func TestPrintableReport(t *testing.T) {
	rep := &luksconv.Report{Partitions: []luksconv.PartitionInfo{{Number: 1, Name: "evil\x1b]0;pwned\x07\x1b[2J", Content: luksconv.ContentXFS}},
		Warnings: []luksconv.Warning{{Code: luksconv.WarnUnreadable, Message: "file \x1b[31mred"}}}
	var b strings.Builder
	printReport(&b, rep)
	out := b.String()
	if strings.ContainsAny(out, "\x1b\x07") {
		t.Fatalf("raw control bytes printed: %q", out)
	}
	if !strings.Contains(out, `evil\x1b]0;pwned\x07\x1b[2J`) || !strings.Contains(out, `file \x1b[31mred`) {
		t.Fatalf("escaped name or warning missing: %q", out)
	}
}
