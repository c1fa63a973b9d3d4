// Package luksconv converts a disk image holding a LUKS-encrypted volume — an Azure Disk Encryption OS
// disk first of all — into a plaintext disk image, offline and streaming.
//
// The work runs in three steps:
//
//   - Inspect reads the partition table and says what each partition holds.
//   - NewPlan unlocks the volume and lays out the output as plain data: Copy, Decrypt and Zero regions
//     and byte patches. It reads only metadata.
//   - Execute streams the source through bounded workers into a Sink, decrypting on the way.
//
// The source is only ever read. Secrets stay out of plans, reports and errors; the unlocked key lives
// in the Plan, unexported, until Plan.Close.
package luksconv
