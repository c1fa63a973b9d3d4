//go:build !(amd64 || arm64) || purego

package diskcipher

// xtsUse is always the generic implementation without assembly.
var xtsUse = implGeneric

func xtsSupported() []xtsImpl { return []xtsImpl{implGeneric} }

func xtsKeysFor([]byte) *xtsKeys { return nil }
