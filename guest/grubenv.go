package guest

import (
	"errors"
	"fmt"
	"strings"
)

// GrubenvSize is the size of a GRUB environment block as grub-editenv creates it; LEAPP refuses any
// other size.
const GrubenvSize = 1024

// grubenvSignature starts every GRUB environment block (grub-core/lib/envblk.c).
const grubenvSignature = "# GRUB Environment Block\n"

// ErrNotGrubenv is returned (wrapped) by FixGrubenv for content that does not start with the GRUB
// environment block signature.
var ErrNotGrubenv = errors.New("not a GRUB environment block")

// envVar is one name=value entry of a grubenv block; [start, end) spans "name=value" (escaped, without
// the newline) and value is unescaped.
type envVar struct {
	name       string
	start, end int
	valStart   int
	value      string
}

// parseGrubenv walks a grubenv block the way GRUB's grub_envblk_iterate does: lines starting with
// '#' are skipped, a line without '=' is skipped, a value runs to the first unescaped newline and
// "\x" stands for x. A value that runs off the end of the block is an error (GRUB stops there).
func parseGrubenv(b []byte) ([]envVar, error) {
	if !strings.HasPrefix(string(b), grubenvSignature) {
		return nil, fmt.Errorf("grubenv: %w: no signature line at offset 0", ErrNotGrubenv)
	}
	var vars []envVar
	p := len(grubenvSignature)
	for p < len(b) {
		if b[p] == '#' || b[p] == '\n' {
			p = nextLine(b, p)
			continue
		}
		start := p
		for p < len(b) && b[p] != '=' && b[p] != '\n' {
			p++
		}
		if p >= len(b) || b[p] == '\n' {
			// GRUB ignores a line without '='.
			p = nextLine(b, start)
			continue
		}
		name := string(b[start:p])
		p++
		valStart := p
		var val strings.Builder
		for p < len(b) && b[p] != '\n' {
			if b[p] == '\\' {
				p++
				if p >= len(b) {
					break
				}
			}
			val.WriteByte(b[p])
			p++
		}
		if p >= len(b) {
			return nil, fmt.Errorf("grubenv: variable %q at offset %d: value not terminated by a newline", name, start)
		}
		vars = append(vars, envVar{name: name, start: start, end: p, valStart: valStart, value: val.String()})
		p++
	}
	return vars, nil
}

func nextLine(b []byte, p int) int {
	for p < len(b) && b[p] != '\n' {
		p++
	}
	return p + 1
}

// escapeEnv escapes a grubenv value as grub_envblk_set does: backslash and newline get a backslash.
func escapeEnv(s string) string {
	var sb strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' || s[i] == '\n' {
			sb.WriteByte('\\')
		}
		sb.WriteByte(s[i])
	}
	return sb.String()
}

// FixGrubenv is Policy{}.FixGrubenv.
func FixGrubenv(b []byte) ([]byte, []Change, error) { return Policy{}.FixGrubenv(b) }

// FixGrubenv removes ADE's arguments (see FixCmdline) from the kernelopts variable of a GRUB
// environment block (RHEL 8 BLS entries reference it as $kernelopts) and appends the missing
// p.AddArgs to it. The block keeps its exact size, like grub_envblk_set: when the value shrinks the
// rest of the block moves left and the freed bytes are appended as '#' padding; when it grows the rest
// moves right into the trailing '#' padding, and a block with too little padding is an error (as
// grub-editenv's "environment block too small"). The result is byte-identical to what
// `grub-editenv FILE set kernelopts=...` writes. A block without kernelopts gets none. Content without
// the signature line is an error wrapping ErrNotGrubenv, never a guess. The result is nil when nothing
// needs changing. Change.Path is empty.
func (p Policy) FixGrubenv(b []byte) ([]byte, []Change, error) {
	vars, err := parseGrubenv(b)
	if err != nil {
		return nil, nil, err
	}
	out := []byte(nil)
	var changes []Change
	// Edit from the last variable backwards so earlier offsets stay valid.
	for i := len(vars) - 1; i >= 0; i-- {
		v := vars[i]
		if v.name != "kernelopts" {
			continue
		}
		fixed, removed, added, root := p.editArgs(v.value, false, false, true)
		if removed == nil && added == nil {
			continue
		}
		if out == nil {
			out = append([]byte(nil), b...)
		}
		esc := escapeEnv(fixed)
		out = append(append(out[:v.valStart:v.valStart], esc...), out[v.end:]...)
		changes = append([]Change{newChange("", p.editWhy(removed, added, root, " from grubenv kernelopts"),
			[]string{"kernelopts=" + v.value}, []string{"kernelopts=" + fixed})}, changes...)
	}
	if out == nil {
		return nil, nil, nil
	}
	if grow := len(out) - len(b); grow > 0 {
		// The block's tail is its '#' padding (after the last newline), which the edits never touch.
		if pad := grubenvPadding(b); grow > pad {
			return nil, nil, fmt.Errorf("grubenv: kernelopts needs %d more bytes, the block has %d bytes of '#' padding left at offset %d", grow, pad, len(b)-pad)
		}
		out = out[:len(b)]
	}
	for len(out) < len(b) {
		out = append(out, '#')
	}
	return out, changes, nil
}

// grubenvPadding is the length of the run of '#' that ends the block after its last newline, the free
// space grub_envblk_set may use (0 when the block does not end that way).
func grubenvPadding(b []byte) int {
	n := len(b)
	for n > 0 && b[n-1] == '#' {
		n--
	}
	if n == 0 || b[n-1] != '\n' {
		return 0
	}
	return len(b) - n
}
