package luks

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// unmarshalStrict decodes one JSON value. It exists so that the decoding
// policy (currently encoding/json's defaults: unknown members are ignored for
// forward compatibility) lives in one place.
func unmarshalStrict(b []byte, v any) error {
	return json.Unmarshal(b, v)
}

// checkJSONSyntax walks the metadata text token by token and rejects what
// encoding/json would silently accept: duplicate object members (the last
// would win), nesting deeper than maxJSONDepth, a top-level value that is not
// an object, and trailing data.
func checkJSONSyntax(text []byte) error {
	dec := json.NewDecoder(bytes.NewReader(text))
	dec.UseNumber()
	if t := bytes.TrimLeft(text, " \t\r\n"); len(t) == 0 || t[0] != '{' {
		return errors.New("metadata is not a JSON object")
	}
	if err := walkJSON(dec, 0); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("trailing data after the JSON object")
	}
	return nil
}

func walkJSON(dec *json.Decoder, depth int) error {
	tok, err := dec.Token()
	if err != nil {
		return fmt.Errorf("malformed JSON: %v", err)
	}
	d, ok := tok.(json.Delim)
	if !ok {
		return nil
	}
	if depth >= maxJSONDepth {
		return fmt.Errorf("JSON nested deeper than %d levels", maxJSONDepth)
	}
	switch d {
	case '{':
		seen := map[string]bool{}
		for dec.More() {
			kt, err := dec.Token()
			if err != nil {
				return fmt.Errorf("malformed JSON: %v", err)
			}
			k, _ := kt.(string)
			if seen[k] {
				return fmt.Errorf("duplicate JSON member %q", k)
			}
			seen[k] = true
			if err := walkJSON(dec, depth+1); err != nil {
				return err
			}
		}
	case '[':
		for dec.More() {
			if err := walkJSON(dec, depth+1); err != nil {
				return err
			}
		}
	}
	if _, err := dec.Token(); err != nil { // closing delimiter
		return fmt.Errorf("malformed JSON: %v", err)
	}
	return nil
}
