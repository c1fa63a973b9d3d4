//go:build !race

package luksconv_test

const raceEnabled = false
