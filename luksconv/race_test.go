//go:build race

package luksconv_test

// raceEnabled: the package runs under the race detector too (make test); see skipUbuntu.
const raceEnabled = true
