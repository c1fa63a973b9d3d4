//go:build !purego

#include "textflag.h"

// AES-XTS kernels for arm64 (ARMv8 Cryptography Extensions).
//
// Round keys are in the slot layout of aes_schedule.go and are loaded into
// V16-V30 (slot s in V(16+s)). AESD/AESE xor the round key before the S-box
// step, so a cipher is: AESD with round keys 0 .. nr-1, each but the last
// followed by AESIMC, then an xor with round key nr; round key r >= 1 is in
// V(30-nr+r), so AES-128 starts at V21, AES-192 at V19, AES-256 at V17.
//
// Tweaks are little-endian 128-bit values; block j of a sector uses
// T*x^j in GF(2^128) modulo x^128 + x^7 + x^2 + x + 1. The running tweak is
// kept in R10 (low half) and R11 (high half).

#define LOADKEYS(rk) \
	VLD1.P 64(rk), [V16.B16, V17.B16, V18.B16, V19.B16]; \
	VLD1.P 64(rk), [V20.B16, V21.B16, V22.B16, V23.B16]; \
	VLD1.P 64(rk), [V24.B16, V25.B16, V26.B16, V27.B16]; \
	VLD1   (rk), [V28.B16, V29.B16, V30.B16]

// DOUBLE multiplies the tweak in R10:R11 by x.
#define DOUBLE \
	ASR $63, R11, R12;     \
	LSR $63, R10, R13;     \
	ORR R11<<1, R13, R11;  \
	AND $0x87, R12, R12;   \
	EOR R10<<1, R12, R10

// TWEAK moves the running tweak into v and advances it.
#define TWEAK(v) \
	VMOV R10, v.D[0]; \
	VMOV R11, v.D[1]; \
	DOUBLE

#define ROUND8(op, mix, k) \
	op k.B16, V0.B16; mix V0.B16, V0.B16; \
	op k.B16, V1.B16; mix V1.B16, V1.B16; \
	op k.B16, V2.B16; mix V2.B16, V2.B16; \
	op k.B16, V3.B16; mix V3.B16, V3.B16; \
	op k.B16, V4.B16; mix V4.B16, V4.B16; \
	op k.B16, V5.B16; mix V5.B16, V5.B16; \
	op k.B16, V6.B16; mix V6.B16, V6.B16; \
	op k.B16, V7.B16; mix V7.B16, V7.B16

#define LAST8(op, k) \
	op k.B16, V0.B16; op k.B16, V1.B16; op k.B16, V2.B16; op k.B16, V3.B16; \
	op k.B16, V4.B16; op k.B16, V5.B16; op k.B16, V6.B16; op k.B16, V7.B16

#define XORTWEAKS8 \
	VEOR V8.B16, V0.B16, V0.B16;  \
	VEOR V9.B16, V1.B16, V1.B16;  \
	VEOR V10.B16, V2.B16, V2.B16; \
	VEOR V11.B16, V3.B16, V3.B16; \
	VEOR V12.B16, V4.B16, V4.B16; \
	VEOR V13.B16, V5.B16, V5.B16; \
	VEOR V14.B16, V6.B16, V6.B16; \
	VEOR V15.B16, V7.B16, V7.B16

#define XORKEY8(k) \
	VEOR k.B16, V0.B16, V0.B16; VEOR k.B16, V1.B16, V1.B16; \
	VEOR k.B16, V2.B16, V2.B16; VEOR k.B16, V3.B16, V3.B16; \
	VEOR k.B16, V4.B16, V4.B16; VEOR k.B16, V5.B16, V5.B16; \
	VEOR k.B16, V6.B16, V6.B16; VEOR k.B16, V7.B16, V7.B16

#define ROUND1(op, mix, k) \
	op k.B16, V0.B16; mix V0.B16, V0.B16

// func encryptBlocksARMv8(nr int, rk, dst, src *byte, n int)
TEXT ·encryptBlocksARMv8(SB), NOSPLIT, $0-40
	MOVD nr+0(FP), R0
	MOVD rk+8(FP), R1
	MOVD dst+16(FP), R2
	MOVD src+24(FP), R3
	MOVD n+32(FP), R4
	LOADKEYS(R1)

block:
	VLD1.P 16(R3), [V0.B16]
	ROUND1(AESE, AESMC, V16)
	CMP    $12, R0
	BLT    r_128
	BEQ    r_192
	ROUND1(AESE, AESMC, V17)
	ROUND1(AESE, AESMC, V18)

r_192:
	ROUND1(AESE, AESMC, V19)
	ROUND1(AESE, AESMC, V20)

r_128:
	ROUND1(AESE, AESMC, V21)
	ROUND1(AESE, AESMC, V22)
	ROUND1(AESE, AESMC, V23)
	ROUND1(AESE, AESMC, V24)
	ROUND1(AESE, AESMC, V25)
	ROUND1(AESE, AESMC, V26)
	ROUND1(AESE, AESMC, V27)
	ROUND1(AESE, AESMC, V28)
	AESE   V29.B16, V0.B16
	VEOR   V30.B16, V0.B16, V0.B16
	VST1.P [V0.B16], 16(R2)
	SUBS   $1, R4, R4
	BNE    block
	RET

// func xtsDecryptARMv8(nr int, rk, dst, src, tweaks *byte, n, sectorSize int)
TEXT ·xtsDecryptARMv8(SB), NOSPLIT, $0-56
	MOVD nr+0(FP), R0
	MOVD rk+8(FP), R1
	MOVD dst+16(FP), R2
	MOVD src+24(FP), R3
	MOVD tweaks+32(FP), R4
	MOVD n+40(FP), R5
	MOVD sectorSize+48(FP), R6
	LOADKEYS(R1)

sector:
	LDP.P 16(R4), (R10, R11) // tweak of block 0
	MOVD  R6, R7             // bytes left in the sector

blocks8:
	CMP    $128, R7
	BLT    blocks1
	VLD1.P 64(R3), [V0.B16, V1.B16, V2.B16, V3.B16]
	VLD1.P 64(R3), [V4.B16, V5.B16, V6.B16, V7.B16]
	TWEAK(V8)
	TWEAK(V9)
	TWEAK(V10)
	TWEAK(V11)
	TWEAK(V12)
	TWEAK(V13)
	TWEAK(V14)
	TWEAK(V15)
	XORTWEAKS8
	ROUND8(AESD, AESIMC, V16)
	CMP    $12, R0
	BLT    r8_128
	BEQ    r8_192
	ROUND8(AESD, AESIMC, V17)
	ROUND8(AESD, AESIMC, V18)

r8_192:
	ROUND8(AESD, AESIMC, V19)
	ROUND8(AESD, AESIMC, V20)

r8_128:
	ROUND8(AESD, AESIMC, V21)
	ROUND8(AESD, AESIMC, V22)
	ROUND8(AESD, AESIMC, V23)
	ROUND8(AESD, AESIMC, V24)
	ROUND8(AESD, AESIMC, V25)
	ROUND8(AESD, AESIMC, V26)
	ROUND8(AESD, AESIMC, V27)
	ROUND8(AESD, AESIMC, V28)
	LAST8(AESD, V29)
	XORKEY8(V30)
	XORTWEAKS8
	VST1.P [V0.B16, V1.B16, V2.B16, V3.B16], 64(R2)
	VST1.P [V4.B16, V5.B16, V6.B16, V7.B16], 64(R2)
	SUB    $128, R7, R7
	B      blocks8

blocks1:
	CBZ    R7, nextsector
	VLD1.P 16(R3), [V0.B16]
	TWEAK(V8)
	VEOR   V8.B16, V0.B16, V0.B16
	ROUND1(AESD, AESIMC, V16)
	CMP    $12, R0
	BLT    r1_128
	BEQ    r1_192
	ROUND1(AESD, AESIMC, V17)
	ROUND1(AESD, AESIMC, V18)

r1_192:
	ROUND1(AESD, AESIMC, V19)
	ROUND1(AESD, AESIMC, V20)

r1_128:
	ROUND1(AESD, AESIMC, V21)
	ROUND1(AESD, AESIMC, V22)
	ROUND1(AESD, AESIMC, V23)
	ROUND1(AESD, AESIMC, V24)
	ROUND1(AESD, AESIMC, V25)
	ROUND1(AESD, AESIMC, V26)
	ROUND1(AESD, AESIMC, V27)
	ROUND1(AESD, AESIMC, V28)
	AESD   V29.B16, V0.B16
	VEOR   V30.B16, V0.B16, V0.B16
	VEOR   V8.B16, V0.B16, V0.B16
	VST1.P [V0.B16], 16(R2)
	SUB    $16, R7, R7
	B      blocks1

nextsector:
	SUBS $1, R5, R5
	BNE  sector
	RET

// func xtsEncryptARMv8(nr int, rk, dst, src, tweaks *byte, n, sectorSize int)
TEXT ·xtsEncryptARMv8(SB), NOSPLIT, $0-56
	MOVD nr+0(FP), R0
	MOVD rk+8(FP), R1
	MOVD dst+16(FP), R2
	MOVD src+24(FP), R3
	MOVD tweaks+32(FP), R4
	MOVD n+40(FP), R5
	MOVD sectorSize+48(FP), R6
	LOADKEYS(R1)

sector:
	LDP.P 16(R4), (R10, R11) // tweak of block 0
	MOVD  R6, R7             // bytes left in the sector

blocks8:
	CMP    $128, R7
	BLT    blocks1
	VLD1.P 64(R3), [V0.B16, V1.B16, V2.B16, V3.B16]
	VLD1.P 64(R3), [V4.B16, V5.B16, V6.B16, V7.B16]
	TWEAK(V8)
	TWEAK(V9)
	TWEAK(V10)
	TWEAK(V11)
	TWEAK(V12)
	TWEAK(V13)
	TWEAK(V14)
	TWEAK(V15)
	XORTWEAKS8
	ROUND8(AESE, AESMC, V16)
	CMP    $12, R0
	BLT    r8_128
	BEQ    r8_192
	ROUND8(AESE, AESMC, V17)
	ROUND8(AESE, AESMC, V18)

r8_192:
	ROUND8(AESE, AESMC, V19)
	ROUND8(AESE, AESMC, V20)

r8_128:
	ROUND8(AESE, AESMC, V21)
	ROUND8(AESE, AESMC, V22)
	ROUND8(AESE, AESMC, V23)
	ROUND8(AESE, AESMC, V24)
	ROUND8(AESE, AESMC, V25)
	ROUND8(AESE, AESMC, V26)
	ROUND8(AESE, AESMC, V27)
	ROUND8(AESE, AESMC, V28)
	LAST8(AESE, V29)
	XORKEY8(V30)
	XORTWEAKS8
	VST1.P [V0.B16, V1.B16, V2.B16, V3.B16], 64(R2)
	VST1.P [V4.B16, V5.B16, V6.B16, V7.B16], 64(R2)
	SUB    $128, R7, R7
	B      blocks8

blocks1:
	CBZ    R7, nextsector
	VLD1.P 16(R3), [V0.B16]
	TWEAK(V8)
	VEOR   V8.B16, V0.B16, V0.B16
	ROUND1(AESE, AESMC, V16)
	CMP    $12, R0
	BLT    r1_128
	BEQ    r1_192
	ROUND1(AESE, AESMC, V17)
	ROUND1(AESE, AESMC, V18)

r1_192:
	ROUND1(AESE, AESMC, V19)
	ROUND1(AESE, AESMC, V20)

r1_128:
	ROUND1(AESE, AESMC, V21)
	ROUND1(AESE, AESMC, V22)
	ROUND1(AESE, AESMC, V23)
	ROUND1(AESE, AESMC, V24)
	ROUND1(AESE, AESMC, V25)
	ROUND1(AESE, AESMC, V26)
	ROUND1(AESE, AESMC, V27)
	ROUND1(AESE, AESMC, V28)
	AESE   V29.B16, V0.B16
	VEOR   V30.B16, V0.B16, V0.B16
	VEOR   V8.B16, V0.B16, V0.B16
	VST1.P [V0.B16], 16(R2)
	SUB    $16, R7, R7
	B      blocks1

nextsector:
	SUBS $1, R5, R5
	BNE  sector
	RET

