//go:build !race

package blobio

const raceEnabled = false
