package lvm

// A small reader for the LVM configuration syntax used by the text metadata
// (libdm's dm_config format): sections `name { ... }`, assignments
// `key = value`, values that are integers, floats, strings ("..." with \" and
// \\ escapes, '...' without escapes, or bare words) and flat arrays
// `[v, v, ...]`, and `#` comments to the end of the line.

import (
	"fmt"
	"strconv"
)

// Parser limits. The text itself is bounded by the metadata area that holds
// it (and by MaxTextSize); these bound what one text can make us build.
const (
	maxDepth      = 32      // section nesting, as libdm's MAX_INDENT
	maxArrayItems = 1 << 20 // values in one array
)

type valueKind int

const (
	kindInt valueKind = iota
	kindFloat
	kindString
	kindArray
)

// value is a scalar or a flat array of scalars.
type value struct {
	kind  valueKind
	i     int64
	f     float64
	s     string
	items []value
}

// node is a section (children non-nil, val nil) or an assignment.
type node struct {
	key      string
	val      *value
	children []*node
	section  bool
	line     int
}

// get returns the first child named key; libdm also keeps the first of
// duplicate keys (and warns).
func (n *node) get(key string) *node {
	for _, c := range n.children {
		if c.key == key {
			return c
		}
	}
	return nil
}

type tokKind int

const (
	tokEOF tokKind = iota
	tokIdent
	tokSectionB
	tokSectionE
	tokArrayB
	tokArrayE
	tokComma
	tokEq
	tokInt
	tokFloat
	tokString // quoted, already unescaped
	tokBare   // unquoted word in value position
)

type token struct {
	kind tokKind
	text string
	line int
}

type textParser struct {
	b    []byte
	pos  int
	line int
	tok  token
}

// syntaxError is returned by parseConfig; the caller adds the structure and
// device offset.
type syntaxError struct {
	line int
	msg  string
}

func (e *syntaxError) Error() string { return fmt.Sprintf("line %d: %s", e.line, e.msg) }

func (p *textParser) errorf(format string, args ...any) error {
	return &syntaxError{line: p.tok.line, msg: fmt.Sprintf(format, args...)}
}

func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func (p *textParser) skipSpace() {
	for p.pos < len(p.b) {
		c := p.b[p.pos]
		switch {
		case c == '\n':
			p.line++
			p.pos++
		case isSpace(c):
			p.pos++
		case c == '#':
			// A comment ends at the newline or at the text's terminating NUL (libdm's _get_token).
			for p.pos < len(p.b) && p.b[p.pos] != '\n' && p.b[p.pos] != 0 {
				p.pos++
			}
		default:
			return
		}
	}
}

// next reads the next token. As in libdm, whether a word is a number or a
// bare string depends on the previous token: numbers are only recognised in
// value position (after '=', '[' or ',').
func (p *textParser) next() error {
	valuePos := p.tok.kind == tokEq || p.tok.kind == tokArrayB || p.tok.kind == tokComma
	p.skipSpace()
	p.tok = token{line: p.line}
	// libdm stops at a NUL byte: the on-disk text is NUL-terminated.
	if p.pos >= len(p.b) || p.b[p.pos] == 0 {
		p.tok.kind = tokEOF
		return nil
	}
	start := p.pos
	c := p.b[p.pos]
	p.pos++
	switch c {
	case '{':
		p.tok.kind = tokSectionB
	case '}':
		p.tok.kind = tokSectionE
	case '[':
		p.tok.kind = tokArrayB
	case ']':
		p.tok.kind = tokArrayE
	case ',':
		p.tok.kind = tokComma
	case '=':
		p.tok.kind = tokEq
	case '"':
		buf := make([]byte, 0, 16)
		for {
			if p.pos >= len(p.b) || p.b[p.pos] == 0 {
				return p.errorf("unterminated string")
			}
			c := p.b[p.pos]
			p.pos++
			if c == '"' {
				break
			}
			if c == '\n' {
				p.line++
			}
			// Only \" and \\ are escapes (dm_unescape_double_quotes);
			// any other backslash is kept.
			if c == '\\' && p.pos < len(p.b) && (p.b[p.pos] == '"' || p.b[p.pos] == '\\') {
				c = p.b[p.pos]
				p.pos++
			}
			buf = append(buf, c)
		}
		p.tok.kind, p.tok.text = tokString, string(buf)
	case '\'':
		for {
			if p.pos >= len(p.b) || p.b[p.pos] == 0 {
				return p.errorf("unterminated string")
			}
			c := p.b[p.pos]
			p.pos++
			if c == '\'' {
				break
			}
			if c == '\n' {
				p.line++
			}
		}
		p.tok.kind, p.tok.text = tokString, string(p.b[start+1:p.pos-1])
	default:
		if valuePos && (isDigit(c) || c == '+' || c == '-' || c == '.') {
			kind := tokInt
			if c == '.' {
				kind = tokFloat
			}
			for p.pos < len(p.b) {
				d := p.b[p.pos]
				if d == '.' && kind == tokInt {
					kind = tokFloat
				} else if !isDigit(d) {
					break
				}
				p.pos++
			}
			p.tok.kind, p.tok.text = kind, string(p.b[start:p.pos])
			return nil
		}
		for p.pos < len(p.b) {
			d := p.b[p.pos]
			if d == 0 || isSpace(d) || d == '#' || d == '=' || d == '{' || d == '}' {
				break
			}
			p.pos++
		}
		p.tok.kind, p.tok.text = tokIdent, string(p.b[start:p.pos])
		if valuePos {
			p.tok.kind = tokBare
		}
	}
	return nil
}

// parseConfig parses a whole text into a root section.
func parseConfig(b []byte) (*node, error) {
	p := &textParser{b: b, line: 1}
	if err := p.next(); err != nil {
		return nil, err
	}
	root := &node{key: "", section: true, line: 1}
	for p.tok.kind != tokEOF {
		n, err := p.entry(1)
		if err != nil {
			return nil, err
		}
		root.children = append(root.children, n)
	}
	return root, nil
}

// entry parses `name { ... }` or `name = value`.
func (p *textParser) entry(depth int) (*node, error) {
	if depth > maxDepth {
		return nil, p.errorf("sections nested deeper than %d", maxDepth)
	}
	var key string
	switch p.tok.kind {
	case tokIdent, tokString:
		key = p.tok.text
	default:
		return nil, p.errorf("expected a name, found %s", p.describe())
	}
	if key == "" {
		return nil, p.errorf("empty name")
	}
	n := &node{key: key, line: p.tok.line}
	if err := p.next(); err != nil {
		return nil, err
	}
	switch p.tok.kind {
	case tokSectionB:
		n.section = true
		if err := p.next(); err != nil {
			return nil, err
		}
		for p.tok.kind != tokSectionE {
			if p.tok.kind == tokEOF {
				return nil, p.errorf("section %q is not closed", key)
			}
			c, err := p.entry(depth + 1)
			if err != nil {
				return nil, err
			}
			n.children = append(n.children, c)
		}
		if err := p.next(); err != nil {
			return nil, err
		}
	case tokEq:
		if err := p.next(); err != nil {
			return nil, err
		}
		v, err := p.value()
		if err != nil {
			return nil, err
		}
		n.val = &v
	default:
		return nil, p.errorf("expected '{' or '=' after %q, found %s", key, p.describe())
	}
	return n, nil
}

func (p *textParser) value() (value, error) {
	if p.tok.kind != tokArrayB {
		return p.scalar()
	}
	if err := p.next(); err != nil {
		return value{}, err
	}
	v := value{kind: kindArray, items: []value{}}
	if p.tok.kind == tokArrayE {
		return v, p.next()
	}
	for {
		if len(v.items) >= maxArrayItems {
			return value{}, p.errorf("array longer than %d items", maxArrayItems)
		}
		s, err := p.scalar()
		if err != nil {
			return value{}, err
		}
		v.items = append(v.items, s)
		switch p.tok.kind {
		case tokComma:
			if err := p.next(); err != nil {
				return value{}, err
			}
		case tokArrayE:
			return v, p.next()
		default:
			return value{}, p.errorf("expected ',' or ']' in array, found %s", p.describe())
		}
	}
}

// scalar parses one scalar and advances past it.
func (p *textParser) scalar() (value, error) {
	var v value
	switch p.tok.kind {
	case tokInt:
		// strtoll(…, 0) in libdm: a leading 0 means octal.
		i, err := strconv.ParseInt(p.tok.text, 0, 64)
		if err != nil {
			return v, p.errorf("bad integer %q", p.tok.text)
		}
		v = value{kind: kindInt, i: i}
	case tokFloat:
		f, err := strconv.ParseFloat(p.tok.text, 64)
		if err != nil {
			return v, p.errorf("bad number %q", p.tok.text)
		}
		v = value{kind: kindFloat, f: f}
	case tokString, tokBare:
		v = value{kind: kindString, s: p.tok.text}
	default:
		return v, p.errorf("expected a value, found %s", p.describe())
	}
	return v, p.next()
}

func (p *textParser) describe() string {
	switch p.tok.kind {
	case tokEOF:
		return "end of text"
	case tokSectionB:
		return "'{'"
	case tokSectionE:
		return "'}'"
	case tokArrayB:
		return "'['"
	case tokArrayE:
		return "']'"
	case tokComma:
		return "','"
	case tokEq:
		return "'='"
	}
	t := p.tok.text
	if len(t) > 32 {
		t = t[:32] + "..."
	}
	return strconv.Quote(t)
}
