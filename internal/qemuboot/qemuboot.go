// Package qemuboot boots disk images in qemu-system-x86_64 (software emulation, TCG) and reports what
// the guest printed on its serial console. It is the test harness for issue 3's "real boot": the
// ADE-style disk built by testdata/boot/mkbootdisk.sh must boot with its BEK volume attached (proving it
// unlocks like Azure Disk Encryption), and a converted disk must boot without one.
//
// The guest's kernel, initramfs and command line are read from the disk's own /boot (ReadBootFiles:
// GPT via sgdisk, files via xfs_db, the BLS entry expanded with grubenv), so a test boots exactly what
// grub would. The root filesystem's /sbin/init prints a marker line and powers off:
//
//	LUKSCONV-BOOT-DM dm-0 name=osencrypt uuid=CRYPT-LUKS2-...-osencrypt slaves=vda4
//	LUKSCONV-BOOT-OK root=/dev/mapper/rootvg-rootlv
//
// Boot runs one machine; Fixture builds (once, cached) the bootable disk set; BootDisk boots a disk from
// a test.
package qemuboot

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// DefaultMarker starts the line the boot disk's /sbin/init prints once the root filesystem is up.
const DefaultMarker = "LUKSCONV-BOOT-OK"

// EnvAccel names the environment variable that overrides the qemu accelerator ("tcg" by default; the
// tests must pass with software emulation, but "kvm" is handy on a developer machine).
const EnvAccel = "LUKSCONV_QEMU_ACCEL"

// maxLog bounds the serial log kept in memory; a guest stuck in a loop cannot exhaust the host.
const maxLog = 32 << 20

// Drive is a disk attached to the guest as a virtio block device (vda, vdb, ... in order).
type Drive struct {
	Path   string
	Format string // qemu format name, "raw" if empty
	// ReadOnly attaches the image read-only; otherwise it is attached with snapshot=on, so guest
	// writes go to a temporary overlay. Either way the image file is never changed.
	ReadOnly bool
}

// Options describe one boot.
type Options struct {
	Kernel string // bzImage on the host
	Initrd string // initramfs on the host ("" for none)
	Append string // kernel command line
	// ExtraAppend is appended to Append (test-only arguments such as "panic=-1").
	ExtraAppend string
	Drives      []Drive
	// Timeout bounds the boot; when it expires qemu is killed and Result.TimedOut is set. Zero means
	// DefaultTimeout.
	Timeout time.Duration
	// Marker starts the success line (DefaultMarker if empty). Once it appears qemu gets Grace to
	// power off before it is killed.
	Marker string
	Grace  time.Duration // 0 means 20 s
	// StopOn, if set, ends the boot (killing qemu) as soon as a console line matches.
	StopOn *regexp.Regexp
	// GraceAfter, if set, ends a boot that is to hang at a known point: once a console line
	// matches it, qemu gets Grace as after the marker. Its end then does not depend on how fast
	// the host got the guest there, as a short Timeout's would.
	GraceAfter *regexp.Regexp
	MemoryM    int    // guest memory in MiB, 1024 if 0
	CPUs       int    // guest CPUs, 2 if 0
	Accel      string // qemu accelerator; $LUKSCONV_QEMU_ACCEL or "tcg" if empty
	QEMU       string // the qemu binary, "qemu-system-x86_64" if empty
	// LogFile, if set, receives a copy of the serial console as it arrives.
	LogFile string
}

// DefaultTimeout bounds a boot when Options.Timeout is zero. A TCG boot of the test disk takes about
// 30-60 s on 2 cores.
const DefaultTimeout = 4 * time.Minute

// DMDevice is a device-mapper device as the guest's init reported it (a LUKSCONV-BOOT-DM line).
type DMDevice struct {
	Dev    string   // kernel name, e.g. "dm-0"
	Name   string   // mapping name, e.g. "osencrypt", "rootvg-rootlv"
	UUID   string   // e.g. "CRYPT-LUKS2-<uuid>-osencrypt", "LVM-<vg><lv>"
	Slaves []string // underlying kernel devices, e.g. ["vda4"]
}

// Result is what a boot showed.
type Result struct {
	Log         string        // the serial console (ANSI colour sequences kept)
	MarkerFound bool          // the marker line appeared
	MarkerLine  string        // that line
	Root        string        // the root= value of the marker line: what / was mounted from
	DM          []DMDevice    // device-mapper devices at the time / was reached
	Elapsed     time.Duration // from qemu's start to its end
	TimedOut    bool          // Timeout expired (qemu was killed)
	Stopped     bool          // a line matched StopOn (qemu was killed)
	ExitCode    int           // qemu's exit status (-1 when killed by a signal)
}

// Contains reports whether the console, with ANSI escape sequences removed, contains s.
func (r *Result) Contains(s string) bool { return strings.Contains(StripANSI(r.Log), s) }

// Match reports whether the console, with ANSI escape sequences removed, matches re.
func (r *Result) Match(re *regexp.Regexp) bool { return re.MatchString(StripANSI(r.Log)) }

// DMByName returns the device-mapper device called name.
func (r *Result) DMByName(name string) (DMDevice, bool) {
	for _, d := range r.DM {
		if d.Name == name {
			return d, true
		}
	}
	return DMDevice{}, false
}

// Tail returns the last n lines of the console without ANSI escape sequences, for failure messages.
func (r *Result) Tail(n int) string {
	lines := strings.Split(strings.TrimRight(StripANSI(r.Log), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

var ansiRE = regexp.MustCompile(`\x1b\[[0-9;?]*[A-Za-z]`)

// StripANSI removes terminal escape sequences (systemd colours its status lines) and carriage returns.
func StripANSI(s string) string {
	return strings.ReplaceAll(ansiRE.ReplaceAllString(s, ""), "\r", "")
}

// ParseConsole fills the marker and device-mapper fields of a Result from a serial log.
func ParseConsole(log, marker string) Result {
	if marker == "" {
		marker = DefaultMarker
	}
	r := Result{Log: log}
	for _, line := range strings.Split(StripANSI(log), "\n") {
		line = strings.TrimSpace(line)
		switch {
		case !r.MarkerFound && (line == marker || strings.HasPrefix(line, marker+" ")):
			r.MarkerFound, r.MarkerLine = true, line
			for _, f := range strings.Fields(line[len(marker):]) {
				if v, ok := strings.CutPrefix(f, "root="); ok {
					r.Root = v
				}
			}
		case strings.HasPrefix(line, "LUKSCONV-BOOT-DM "):
			if d, ok := parseDM(line); ok {
				r.DM = append(r.DM, d)
			}
		}
	}
	return r
}

// parseDM parses "LUKSCONV-BOOT-DM dm-0 name=N uuid=U slaves=a b".
func parseDM(line string) (DMDevice, bool) {
	f := strings.Fields(strings.TrimPrefix(line, "LUKSCONV-BOOT-DM "))
	if len(f) == 0 {
		return DMDevice{}, false
	}
	d := DMDevice{Dev: f[0]}
	inSlaves := false
	for _, w := range f[1:] {
		switch {
		case strings.HasPrefix(w, "name="):
			d.Name, inSlaves = w[len("name="):], false
		case strings.HasPrefix(w, "uuid="):
			d.UUID, inSlaves = w[len("uuid="):], false
		case strings.HasPrefix(w, "slaves="):
			inSlaves = true
			if v := w[len("slaves="):]; v != "" {
				d.Slaves = append(d.Slaves, v)
			}
		case inSlaves:
			d.Slaves = append(d.Slaves, w)
		}
	}
	return d, true
}

// Args returns the qemu command line for o (without the binary).
func (o *Options) Args() []string {
	mem, cpus := o.MemoryM, o.CPUs
	if mem == 0 {
		mem = 1024
	}
	if cpus == 0 {
		cpus = 2
	}
	accel := o.Accel
	if accel == "" {
		accel = os.Getenv(EnvAccel)
	}
	if accel == "" {
		accel = "tcg"
	}
	args := []string{
		"-accel", accel, "-m", strconv.Itoa(mem), "-smp", strconv.Itoa(cpus),
		"-nodefaults", "-display", "none", "-no-reboot", "-monitor", "none",
		"-serial", "stdio",
		"-kernel", o.Kernel,
	}
	if o.Initrd != "" {
		args = append(args, "-initrd", o.Initrd)
	}
	args = append(args, "-append", strings.Join(strings.Fields(o.Append+" "+o.ExtraAppend), " "))
	for _, d := range o.Drives {
		format := d.Format
		if format == "" {
			format = "raw"
		}
		// qemu's option syntax escapes a comma in a value by doubling it
		spec := "file=" + strings.ReplaceAll(d.Path, ",", ",,") + ",format=" + format + ",if=virtio"
		if d.ReadOnly {
			spec += ",readonly=on"
		} else {
			spec += ",snapshot=on"
		}
		args = append(args, "-drive", spec)
	}
	return args
}

// ErrNoQEMU is returned by Boot when the qemu binary cannot be found.
var ErrNoQEMU = errors.New("qemuboot: qemu-system-x86_64 not installed (Debian package qemu-system-x86)")

// Boot starts qemu, collects the serial console until the guest powers off, the marker appeared and
// the grace period ran out, a StopOn line appeared, Timeout expired or ctx ended, and always leaves no
// qemu behind. A boot that times out or is stopped is not an error: the Result says what happened.
// Errors are for a machine that could not run (qemu missing or failing to start, ctx cancelled).
func Boot(ctx context.Context, o Options) (*Result, error) {
	bin := o.QEMU
	if bin == "" {
		bin = "qemu-system-x86_64"
	}
	path, err := exec.LookPath(bin)
	if err != nil {
		return nil, ErrNoQEMU
	}
	if o.Kernel == "" {
		return nil, errors.New("qemuboot: no kernel")
	}
	for _, f := range append([]string{o.Kernel, o.Initrd}, drivePaths(o.Drives)...) {
		if f == "" {
			continue
		}
		if _, err := os.Stat(f); err != nil {
			return nil, fmt.Errorf("qemuboot: %w", err)
		}
	}
	timeout := o.Timeout
	if timeout == 0 {
		timeout = DefaultTimeout
	}
	grace := o.Grace
	if grace == 0 {
		grace = 20 * time.Second
	}
	marker := o.Marker
	if marker == "" {
		marker = DefaultMarker
	}

	cmd := exec.Command(path, o.Args()...)
	cmd.Stdin = nil
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	var stderr limitedBuffer
	cmd.Stderr = &stderr
	var logf *os.File
	if o.LogFile != "" {
		if logf, err = os.Create(o.LogFile); err != nil {
			return nil, fmt.Errorf("qemuboot: %w", err)
		}
		defer logf.Close()
	}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("qemuboot: start %s: %w", path, err)
	}
	waitDone := make(chan error, 1)
	lines := make(chan string, 256)
	var log limitedBuffer
	var readers sync.WaitGroup
	readers.Add(1)
	go func() {
		defer readers.Done()
		defer close(lines)
		br := bufio.NewReaderSize(stdout, 64<<10)
		for {
			// ReadSlice bounds a "line" to the buffer, so a guest that never prints a newline cannot
			// grow it without limit.
			b, err := br.ReadSlice('\n')
			if errors.Is(err, bufio.ErrBufferFull) {
				err = nil
			}
			line := string(b)
			if line != "" {
				log.WriteString(line)
				if logf != nil {
					logf.WriteString(line)
				}
				lines <- line
			}
			if err != nil {
				return
			}
		}
	}()
	go func() {
		readers.Wait() // Wait closes the pipe; read it to EOF first
		waitDone <- cmd.Wait()
	}()

	res := &Result{ExitCode: -1}
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	var graceC <-chan time.Time
	var escalate []*time.Timer
	kill := func() {
		if escalate != nil {
			return
		}
		// SIGTERM lets qemu exit cleanly (it removes its snapshot overlays); SIGKILL if it does not, and
		// a child that inherited the console pipe must not keep the reader (and Wait) blocked.
		_ = cmd.Process.Signal(syscall.SIGTERM)
		escalate = []*time.Timer{
			time.AfterFunc(5*time.Second, func() { _ = cmd.Process.Kill() }),
			time.AfterFunc(10*time.Second, func() { stdout.Close() }),
		}
	}
	defer func() {
		for _, t := range escalate {
			t.Stop()
		}
	}()
	var waitErr error
	done := ctx.Done()
loop:
	for {
		select {
		case line, ok := <-lines:
			if !ok {
				lines = nil // EOF: qemu is exiting; wait for it
				continue
			}
			clean := strings.TrimSpace(StripANSI(line))
			if graceC == nil && (clean == marker || strings.HasPrefix(clean, marker+" ") || o.GraceAfter != nil && o.GraceAfter.MatchString(clean)) {
				t := time.NewTimer(grace)
				defer t.Stop()
				graceC = t.C
			}
			if o.StopOn != nil && o.StopOn.MatchString(clean) {
				res.Stopped = true
				kill()
			}
		case waitErr = <-waitDone:
			break loop
		case <-graceC:
			kill()
		case <-deadline.C:
			res.TimedOut = true
			kill()
		case <-done:
			done = nil
			kill()
		}
	}
	res.Elapsed = time.Since(start)
	parsed := ParseConsole(log.String(), marker)
	res.Log, res.MarkerFound, res.MarkerLine, res.Root, res.DM =
		parsed.Log, parsed.MarkerFound, parsed.MarkerLine, parsed.Root, parsed.DM
	if cmd.ProcessState != nil && cmd.ProcessState.Exited() {
		res.ExitCode = cmd.ProcessState.ExitCode()
	}
	if err := ctx.Err(); err != nil {
		return res, fmt.Errorf("qemuboot: %w", err)
	}
	// qemu exiting by itself with an error before anything booted means it could not run the machine.
	if waitErr != nil && res.ExitCode > 0 && !res.TimedOut && !res.Stopped && !res.MarkerFound {
		return res, fmt.Errorf("qemuboot: %s exited with status %d: %s", path, res.ExitCode,
			strings.TrimSpace(stderr.String()))
	}
	return res, nil
}

func drivePaths(ds []Drive) []string {
	p := make([]string, len(ds))
	for i, d := range ds {
		p[i] = d.Path
	}
	return p
}

// limitedBuffer is a concurrency-safe buffer that keeps the first maxLog bytes.
type limitedBuffer struct {
	mu        sync.Mutex
	b         strings.Builder
	truncated bool
}

func (l *limitedBuffer) Write(p []byte) (int, error) {
	l.WriteString(string(p))
	return len(p), nil
}

func (l *limitedBuffer) WriteString(s string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if room := maxLog - l.b.Len(); room < len(s) {
		s = s[:max(room, 0)]
		l.truncated = true
	}
	l.b.WriteString(s)
}

func (l *limitedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.truncated {
		return l.b.String() + "\n[qemuboot: log truncated]\n"
	}
	return l.b.String()
}

var _ io.Writer = (*limitedBuffer)(nil)
