package gpt

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
)

// GUID is a GUID in its on-disk form: the first three fields are stored
// little-endian and the last two big-endian ("mixed-endian"), exactly as the
// 16 bytes appear in a GPT header or partition entry.
type GUID [16]byte

// String returns the canonical 8-4-4-4-12 form in lowercase, e.g.
// "c12a7328-f81f-11d2-ba4b-00a0c93ec93b". sgdisk prints the same digits in
// uppercase; lowercase matches blkid, lsblk and /dev/disk/by-partuuid.
func (g GUID) String() string {
	var b [36]byte
	hex.Encode(b[0:8], []byte{g[3], g[2], g[1], g[0]})
	b[8] = '-'
	hex.Encode(b[9:13], []byte{g[5], g[4]})
	b[13] = '-'
	hex.Encode(b[14:18], []byte{g[7], g[6]})
	b[18] = '-'
	hex.Encode(b[19:23], g[8:10])
	b[23] = '-'
	hex.Encode(b[24:36], g[10:16])
	return string(b[:])
}

// IsZero reports whether g is the all-zero GUID (an unused entry's type).
func (g GUID) IsZero() bool { return g == GUID{} }

// ParseGUID parses the canonical 8-4-4-4-12 text form (either case, no
// braces) into on-disk byte order.
func ParseGUID(s string) (GUID, error) {
	var g GUID
	if len(s) != 36 || s[8] != '-' || s[13] != '-' || s[18] != '-' || s[23] != '-' {
		return g, fmt.Errorf("gpt: invalid GUID %q: want the form xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx", s)
	}
	var raw [16]byte
	hexpos := [...]struct{ from, to, at int }{{0, 8, 0}, {9, 13, 4}, {14, 18, 6}, {19, 23, 8}, {24, 36, 10}}
	for _, p := range hexpos {
		if _, err := hex.Decode(raw[p.at:], []byte(s[p.from:p.to])); err != nil {
			return g, fmt.Errorf("gpt: invalid GUID %q: %v", s, err)
		}
	}
	// raw holds the text order (big-endian fields); swap the first three
	// fields into their little-endian on-disk order.
	binary.LittleEndian.PutUint32(g[0:4], binary.BigEndian.Uint32(raw[0:4]))
	binary.LittleEndian.PutUint16(g[4:6], binary.BigEndian.Uint16(raw[4:6]))
	binary.LittleEndian.PutUint16(g[6:8], binary.BigEndian.Uint16(raw[6:8]))
	copy(g[8:], raw[8:])
	return g, nil
}

func mustGUID(s string) GUID {
	g, err := ParseGUID(s)
	if err != nil {
		panic(err)
	}
	return g
}

// Partition type GUIDs. Names and values follow the UEFI specification,
// the Discoverable Partitions Specification and util-linux's table.
var (
	TypeUnused             = GUID{}
	TypeEFISystem          = mustGUID("c12a7328-f81f-11d2-ba4b-00a0c93ec93b")
	TypeMBRPartitionScheme = mustGUID("024dee41-33e7-11d3-9d69-0008c781f39f")
	TypeBIOSBoot           = mustGUID("21686148-6449-6e6f-744e-656564454649")
	TypePRePBoot           = mustGUID("9e1a2d38-c612-4316-aa26-8b49521e5a8b")

	TypeMicrosoftReserved  = mustGUID("e3c9e316-0b5c-4db8-817d-f92df00215ae")
	TypeMicrosoftBasicData = mustGUID("ebd0a0a2-b9e5-4433-87c0-68b6b72699c7")
	TypeWindowsRecovery    = mustGUID("de94bba4-06d1-4d40-a16a-bfd50179d6ac")

	TypeLinuxFilesystem   = mustGUID("0fc63daf-8483-4772-8e79-3d69d8477de4")
	TypeLinuxSwap         = mustGUID("0657fd6d-a4ab-43c4-84e5-0933c84b4f4f")
	TypeLinuxLVM          = mustGUID("e6d6d379-f507-44c2-a23c-238f2a3df928")
	TypeLinuxRAID         = mustGUID("a19d880f-05fc-4d3b-a006-743f0f84911e")
	TypeLinuxLUKS         = mustGUID("ca7d7ccb-63ed-4c53-861c-1742536059cc")
	TypeLinuxDMCrypt      = mustGUID("7ffec5c9-2d00-49b7-8941-3ea10a5586b7")
	TypeLinuxExtendedBoot = mustGUID("bc13c2ff-59e6-4262-a352-b275fd6f7172")
	TypeLinuxReserved     = mustGUID("8da63339-0007-60c0-c436-083ac8230908")
	TypeLinuxHome         = mustGUID("933ac7e1-2eb4-4f13-b844-0e14e2aef915")
	TypeLinuxServerData   = mustGUID("3b8f8425-20e0-4f3b-907f-1a25a76f98e8")
	TypeLinuxVariableData = mustGUID("4d21b016-b534-45c2-a9fb-5c16e091fd2d")
	TypeLinuxTemporary    = mustGUID("7ec6f557-3bc5-4aca-b293-16ef5df639d1")
	TypeLinuxRootX86      = mustGUID("44479540-f297-41b2-9af7-d131d5f0458a")
	TypeLinuxRootX8664    = mustGUID("4f68bce3-e8cd-4db1-96e7-fbcaf984b709")
	TypeLinuxRootARM64    = mustGUID("b921b045-1df0-41c3-af44-4c6f280d3fae")
	TypeLinuxUsrX8664     = mustGUID("8484680c-9521-48c6-9c11-b0720656f69e")
	TypeLinuxUsrARM64     = mustGUID("b0e01050-ee5f-4390-949a-9101b17104e9")
)

// typeNames uses util-linux (fdisk, lsblk PARTTYPENAME) wording.
var typeNames = map[GUID]string{
	TypeEFISystem:          "EFI System",
	TypeMBRPartitionScheme: "MBR partition scheme",
	TypeBIOSBoot:           "BIOS boot",
	TypePRePBoot:           "PowerPC PReP boot",
	TypeMicrosoftReserved:  "Microsoft reserved",
	TypeMicrosoftBasicData: "Microsoft basic data",
	TypeWindowsRecovery:    "Windows recovery environment",
	TypeLinuxFilesystem:    "Linux filesystem",
	TypeLinuxSwap:          "Linux swap",
	TypeLinuxLVM:           "Linux LVM",
	TypeLinuxRAID:          "Linux RAID",
	TypeLinuxLUKS:          "Linux LUKS",
	TypeLinuxDMCrypt:       "Linux plain dm-crypt",
	TypeLinuxExtendedBoot:  "Linux extended boot",
	TypeLinuxReserved:      "Linux reserved",
	TypeLinuxHome:          "Linux home",
	TypeLinuxServerData:    "Linux server data",
	TypeLinuxVariableData:  "Linux variable data",
	TypeLinuxTemporary:     "Linux temporary data",
	TypeLinuxRootX86:       "Linux root (x86)",
	TypeLinuxRootX8664:     "Linux root (x86-64)",
	TypeLinuxRootARM64:     "Linux root (ARM-64)",
	TypeLinuxUsrX8664:      "Linux /usr (x86-64)",
	TypeLinuxUsrARM64:      "Linux /usr (ARM-64)",
}

// TypeName returns a human-readable name for a partition type GUID, such as
// "EFI System", "BIOS boot", "Linux filesystem" or "Linux LVM", or "" if the
// type is unused or not known to this package.
func TypeName(g GUID) string { return typeNames[g] }
