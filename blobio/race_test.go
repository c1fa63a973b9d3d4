//go:build race

package blobio

// raceEnabled: the race detector's instrumentation allocates more; allocation bounds in tests widen.
const raceEnabled = true
