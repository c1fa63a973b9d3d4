package main

import (
	"fmt"
	"io"
	"os"
	"time"

	"github.com/luksconv/luksconv/luksconv"
	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"
)

// progressReporter renders engine events: a bar with rate and ETA on a terminal, plain lines otherwise.
type progressReporter struct {
	w        io.Writer
	bar      *progressbar.ProgressBar
	lastLine time.Time
	quiet    bool
}

func newProgress(w io.Writer, total int64, quiet bool) *progressReporter {
	pr := &progressReporter{w: w, quiet: quiet}
	if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) && !quiet {
		pr.bar = progressbar.NewOptions64(total,
			progressbar.OptionSetWriter(w),
			progressbar.OptionSetDescription("converting"),
			progressbar.OptionShowBytes(true),
			progressbar.OptionSetPredictTime(true),
			progressbar.OptionShowElapsedTimeOnFinish(),
			progressbar.OptionSetWidth(30),
			progressbar.OptionThrottle(100*time.Millisecond),
			progressbar.OptionShowCount(),
		)
	}
	return pr
}

// plainInterval spaces the progress lines written to a file or pipe.
const plainInterval = 5 * time.Second

func (pr *progressReporter) update(p luksconv.Progress) {
	if pr.quiet {
		return
	}
	if pr.bar != nil {
		pr.bar.Set64(p.Done)
		if p.Final {
			pr.bar.Finish()
			fmt.Fprintln(pr.w)
		}
		return
	}
	if !p.Final && time.Since(pr.lastLine) < plainInterval {
		return
	}
	pr.lastLine = time.Now()
	pct := 100.0
	if p.Total > 0 {
		pct = 100 * float64(p.Done) / float64(p.Total)
	}
	rate := float64(p.Done) / p.Elapsed.Seconds()
	eta := "-"
	if rate > 0 && p.Done < p.Total {
		eta = time.Duration(float64(p.Total-p.Done) / rate * float64(time.Second)).Round(time.Second).String()
	}
	fmt.Fprintf(pr.w, "progress: %5.1f%% %s of %s, %s/s, eta %s\n", pct, human(p.Done), human(p.Total), human(int64(rate)), eta)
}

// human formats a byte count with binary units.
func human(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
