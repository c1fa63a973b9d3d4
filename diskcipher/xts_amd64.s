//go:build !purego

#include "textflag.h"

// AES-XTS kernels for amd64.
//
// Round keys are in the slot layout of aes_schedule.go: slot 0 at offset 0
// is the initial AddRoundKey, and round r of nr is in slot 14-nr+r, so the
// last ten rounds are always at offsets 80-224 and AES-192 and AES-256 only
// add two or four rounds in front (offsets 48-64 and 16-32).
//
// Tweaks are little-endian 128-bit values; block j of a sector uses
// T*x^j in GF(2^128) modulo x^128 + x^7 + x^2 + x + 1, T being the
// encrypted IV passed in by the Go code.

// xtsDoubleMask: after PSHUFD $0x13 and PSRAL $31 spread the top bits of
// the two 64-bit halves of a tweak into dwords 0 and 2, this keeps 0x87
// (reduction of bit 127) in the low half and 1 (carry from bit 63) in the
// high half.
DATA xtsDoubleMask<>+0(SB)/8, $0x87
DATA xtsDoubleMask<>+8(SB)/8, $1
GLOBL xtsDoubleMask<>(SB), RODATA|NOPTR, $16

// xtsPoly: the reduction constant in both halves, so either can be picked
// by VPCLMULQDQ.
DATA xtsPoly<>+0(SB)/8, $0x87
DATA xtsPoly<>+8(SB)/8, $0x87
GLOBL xtsPoly<>(SB), RODATA|NOPTR, $16

// Per-qword shift counts that turn a tweak broadcast to the four 128-bit
// lanes of a ZMM register into T, T*x, T*x^2, T*x^3. Counts of 64 give 0.
DATA xtsLaneShl<>+0(SB)/8, $0
DATA xtsLaneShl<>+8(SB)/8, $0
DATA xtsLaneShl<>+16(SB)/8, $1
DATA xtsLaneShl<>+24(SB)/8, $1
DATA xtsLaneShl<>+32(SB)/8, $2
DATA xtsLaneShl<>+40(SB)/8, $2
DATA xtsLaneShl<>+48(SB)/8, $3
DATA xtsLaneShl<>+56(SB)/8, $3
GLOBL xtsLaneShl<>(SB), RODATA|NOPTR, $64

DATA xtsLaneShr<>+0(SB)/8, $64
DATA xtsLaneShr<>+8(SB)/8, $64
DATA xtsLaneShr<>+16(SB)/8, $63
DATA xtsLaneShr<>+24(SB)/8, $63
DATA xtsLaneShr<>+32(SB)/8, $62
DATA xtsLaneShr<>+40(SB)/8, $62
DATA xtsLaneShr<>+48(SB)/8, $61
DATA xtsLaneShr<>+56(SB)/8, $61
GLOBL xtsLaneShr<>(SB), RODATA|NOPTR, $64

// ---- AES-NI: blocks in X0-X7, round key in X9 ----

#define XOR8(k) \
	PXOR k, X0; PXOR k, X1; PXOR k, X2; PXOR k, X3; \
	PXOR k, X4; PXOR k, X5; PXOR k, X6; PXOR k, X7

#define ROUND8(op, off) \
	MOVOU off(BX), X9; \
	op X9, X0; op X9, X1; op X9, X2; op X9, X3; \
	op X9, X4; op X9, X5; op X9, X6; op X9, X7

#define ROUND1(op, off) \
	MOVOU off(BX), X9; \
	op    X9, X0

// DOUBLE multiplies the tweak t by x without PCLMULQDQ: shift both 64-bit
// halves left by one (PADDQ) and xor in the bits that fell off their tops.
#define DOUBLE(t, tmp, mask) \
	PSHUFD $0x13, t, tmp; \
	PSRAL  $31, tmp;      \
	PAND   mask, tmp;     \
	PADDQ  t, t;          \
	PXOR   tmp, t

// NEXT_TWEAK stores the running tweak X8 at off(base) and advances it.
#define NEXT_TWEAK(off, base) \
	MOVOU X8, off(base); \
	DOUBLE(X8, X10, X12)

#define TWEAK_IN1(off, x) \
	MOVOU off(R10), X11; \
	PXOR  X11, x

#define TWEAKS_IN8 \
	TWEAK_IN1(0, X0); TWEAK_IN1(16, X1); TWEAK_IN1(32, X2); TWEAK_IN1(48, X3); \
	TWEAK_IN1(64, X4); TWEAK_IN1(80, X5); TWEAK_IN1(96, X6); TWEAK_IN1(112, X7)

// LAST1 runs the last round with the tweak folded into the round key X9:
// AESDECLAST(x, k^t) = AESDECLAST(x, k)^t, and likewise for AESENCLAST.
#define LAST1(op, off, x) \
	MOVOU off(R10), X11; \
	PXOR  X9, X11;       \
	op    X11, x

#define LAST8(op) \
	LAST1(op, 0, X0); LAST1(op, 16, X1); LAST1(op, 32, X2); LAST1(op, 48, X3); \
	LAST1(op, 64, X4); LAST1(op, 80, X5); LAST1(op, 96, X6); LAST1(op, 112, X7)

// ---- VAES: blocks in Z0-Z3 (four per register), their tweaks in Z4-Z7,
// round key slots 0-14 broadcast to Z16-Z30, xtsPoly in Z8, temps Z10-Z11.

#define LOADKEYS \
	VBROADCASTI32X4 0(BX), Z16;   \
	VBROADCASTI32X4 16(BX), Z17;  \
	VBROADCASTI32X4 32(BX), Z18;  \
	VBROADCASTI32X4 48(BX), Z19;  \
	VBROADCASTI32X4 64(BX), Z20;  \
	VBROADCASTI32X4 80(BX), Z21;  \
	VBROADCASTI32X4 96(BX), Z22;  \
	VBROADCASTI32X4 112(BX), Z23; \
	VBROADCASTI32X4 128(BX), Z24; \
	VBROADCASTI32X4 144(BX), Z25; \
	VBROADCASTI32X4 160(BX), Z26; \
	VBROADCASTI32X4 176(BX), Z27; \
	VBROADCASTI32X4 192(BX), Z28; \
	VBROADCASTI32X4 208(BX), Z29; \
	VBROADCASTI32X4 224(BX), Z30

#define VROUND(op, k) \
	op k, Z0, Z0; op k, Z1, Z1; op k, Z2, Z2; op k, Z3, Z3

// MULX_BITS sets dst to src*x^k in each 128-bit lane, 0 < k < 64 (rk = 64-k):
// shift the 64-bit halves left by k, move the low half's overflow into the
// high half and fold the high half's overflow back in multiplied by 0x87.
#define MULX_BITS(k, rk, src, dst) \
	VPSRLQ     $rk, src, Z10;    \
	VPSLLQ     $k, src, dst;     \
	VPSLLDQ    $8, Z10, Z11;     \
	VPCLMULQDQ $0x01, Z8, Z10, Z10; \
	VPTERNLOGQ $0x96, Z11, Z10, dst

// MULX_BYTES sets dst to src*x^(8b) in each 128-bit lane (rb = 16-b).
#define MULX_BYTES(b, rb, src, dst) \
	VPSRLDQ    $rb, src, Z10;    \
	VPSLLDQ    $b, src, dst;     \
	VPCLMULQDQ $0x00, Z8, Z10, Z10; \
	VPXORQ     Z10, dst, dst

// SECTOR_TWEAKS loads the sector's tweak T from (DX) and sets Z4-Z7 to the
// tweaks of blocks 0-15: lane l of Z(4+i) is T*x^(4i+l).
#define SECTOR_TWEAKS \
	VBROADCASTI32X4 (DX), Z4;    \
	VPSRLVQ    Z13, Z4, Z10;     \
	VPSLLVQ    Z12, Z4, Z4;      \
	VPSLLDQ    $8, Z10, Z11;     \
	VPCLMULQDQ $0x01, Z8, Z10, Z10; \
	VPTERNLOGQ $0x96, Z11, Z10, Z4; \
	MULX_BITS(4, 60, Z4, Z5);    \
	MULX_BYTES(1, 15, Z4, Z6);   \
	MULX_BITS(12, 52, Z4, Z7)

// NEXT_TWEAKS advances Z4-Z7 by 16 blocks.
#define NEXT_TWEAKS \
	MULX_BYTES(2, 14, Z4, Z4); \
	MULX_BYTES(2, 14, Z5, Z5); \
	MULX_BYTES(2, 14, Z6, Z6); \
	MULX_BYTES(2, 14, Z7, Z7)

// func encryptBlocksAESNI(nr int, rk, dst, src *byte, n int)
// Requires: AES, SSE2
TEXT ·encryptBlocksAESNI(SB), NOSPLIT, $0-40
	MOVQ nr+0(FP), AX
	MOVQ rk+8(FP), BX
	MOVQ dst+16(FP), DI
	MOVQ src+24(FP), SI
	MOVQ n+32(FP), CX

blocks8:
	CMPQ  CX, $8
	JB    blocks1
	MOVOU 0(SI), X0
	MOVOU 16(SI), X1
	MOVOU 32(SI), X2
	MOVOU 48(SI), X3
	MOVOU 64(SI), X4
	MOVOU 80(SI), X5
	MOVOU 96(SI), X6
	MOVOU 112(SI), X7
	MOVOU 0(BX), X9
	XOR8(X9)
	CMPQ  AX, $12
	JB    r8_128
	JE    r8_192
	ROUND8(AESENC, 16)
	ROUND8(AESENC, 32)

r8_192:
	ROUND8(AESENC, 48)
	ROUND8(AESENC, 64)

r8_128:
	ROUND8(AESENC, 80)
	ROUND8(AESENC, 96)
	ROUND8(AESENC, 112)
	ROUND8(AESENC, 128)
	ROUND8(AESENC, 144)
	ROUND8(AESENC, 160)
	ROUND8(AESENC, 176)
	ROUND8(AESENC, 192)
	ROUND8(AESENC, 208)
	ROUND8(AESENCLAST, 224)
	MOVOU X0, 0(DI)
	MOVOU X1, 16(DI)
	MOVOU X2, 32(DI)
	MOVOU X3, 48(DI)
	MOVOU X4, 64(DI)
	MOVOU X5, 80(DI)
	MOVOU X6, 96(DI)
	MOVOU X7, 112(DI)
	ADDQ  $128, SI
	ADDQ  $128, DI
	SUBQ  $8, CX
	JMP   blocks8

blocks1:
	TESTQ CX, CX
	JZ    done
	MOVOU (SI), X0
	MOVOU 0(BX), X9
	PXOR  X9, X0
	CMPQ  AX, $12
	JB    r1_128
	JE    r1_192
	ROUND1(AESENC, 16)
	ROUND1(AESENC, 32)

r1_192:
	ROUND1(AESENC, 48)
	ROUND1(AESENC, 64)

r1_128:
	ROUND1(AESENC, 80)
	ROUND1(AESENC, 96)
	ROUND1(AESENC, 112)
	ROUND1(AESENC, 128)
	ROUND1(AESENC, 144)
	ROUND1(AESENC, 160)
	ROUND1(AESENC, 176)
	ROUND1(AESENC, 192)
	ROUND1(AESENC, 208)
	ROUND1(AESENCLAST, 224)
	MOVOU X0, (DI)
	ADDQ  $16, SI
	ADDQ  $16, DI
	DECQ  CX
	JMP   blocks1

done:
	RET

// func xtsDecryptAESNI(nr int, rk, dst, src, tweaks *byte, n, sectorSize int)
// Requires: AES, SSE2
//
// The tweaks of the current 8 blocks are at (R10), those of the next 8 are
// computed during the middle rounds into (R11), so that the doubling chain
// overlaps the AES work; the two areas swap after every batch. When sectors
// are whole batches (every dm-crypt sector size), the last batch of a sector
// computes the first tweaks of the next one (R13 = 1), so no sector starts
// with a serial tweak computation.
TEXT ·xtsDecryptAESNI(SB), NOSPLIT, $256-56
	MOVQ  nr+0(FP), AX
	MOVQ  rk+8(FP), BX
	MOVQ  dst+16(FP), DI
	MOVQ  src+24(FP), SI
	MOVQ  tweaks+32(FP), DX
	MOVQ  n+40(FP), CX
	MOVQ  sectorSize+48(FP), R8
	MOVOU xtsDoubleMask<>(SB), X12
	MOVQ  R8, R12
	ANDQ  $127, R12 // R12 != 0: sectors end with single blocks
	XORQ  R13, R13

sector:
	MOVQ  R8, R9 // bytes left in the sector
	TESTQ R13, R13
	JNZ   sectortweaksdone
	MOVOU (DX), X8 // tweak of block 0
	ADDQ  $16, DX
	LEAQ  0(SP), R10
	LEAQ  128(SP), R11
	NEXT_TWEAK(0, R10)
	NEXT_TWEAK(16, R10)
	NEXT_TWEAK(32, R10)
	NEXT_TWEAK(48, R10)
	NEXT_TWEAK(64, R10)
	NEXT_TWEAK(80, R10)
	NEXT_TWEAK(96, R10)
	NEXT_TWEAK(112, R10)

sectortweaksdone:
	XORQ R13, R13

blocks8:
	CMPQ  R9, $128
	JB    blocks1
	JNE   batch8
	CMPQ  CX, $1
	JE    batch8
	TESTQ R12, R12
	JNZ   batch8
	MOVOU (DX), X8 // last batch: continue with the next sector's tweaks
	ADDQ  $16, DX
	MOVQ  $1, R13

batch8:
	MOVOU 0(SI), X0
	MOVOU 16(SI), X1
	MOVOU 32(SI), X2
	MOVOU 48(SI), X3
	MOVOU 64(SI), X4
	MOVOU 80(SI), X5
	MOVOU 96(SI), X6
	MOVOU 112(SI), X7
	TWEAKS_IN8
	MOVOU 0(BX), X9
	XOR8(X9)
	CMPQ  AX, $12
	JB    r8_128
	JE    r8_192
	ROUND8(AESDEC, 16)
	ROUND8(AESDEC, 32)

r8_192:
	ROUND8(AESDEC, 48)
	ROUND8(AESDEC, 64)

r8_128:
	ROUND8(AESDEC, 80)
	NEXT_TWEAK(0, R11)
	ROUND8(AESDEC, 96)
	NEXT_TWEAK(16, R11)
	ROUND8(AESDEC, 112)
	NEXT_TWEAK(32, R11)
	ROUND8(AESDEC, 128)
	NEXT_TWEAK(48, R11)
	ROUND8(AESDEC, 144)
	NEXT_TWEAK(64, R11)
	ROUND8(AESDEC, 160)
	NEXT_TWEAK(80, R11)
	ROUND8(AESDEC, 176)
	NEXT_TWEAK(96, R11)
	ROUND8(AESDEC, 192)
	NEXT_TWEAK(112, R11)
	ROUND8(AESDEC, 208)
	MOVOU 224(BX), X9
	LAST8(AESDECLAST)
	MOVOU X0, 0(DI)
	MOVOU X1, 16(DI)
	MOVOU X2, 32(DI)
	MOVOU X3, 48(DI)
	MOVOU X4, 64(DI)
	MOVOU X5, 80(DI)
	MOVOU X6, 96(DI)
	MOVOU X7, 112(DI)
	XCHGQ R10, R11
	ADDQ  $128, SI
	ADDQ  $128, DI
	SUBQ  $128, R9
	JMP   blocks8

blocks1:
	// Fewer than 8 blocks left: their tweaks are at (R10).
	TESTQ R9, R9
	JZ    nextsector
	MOVOU (SI), X0
	MOVOU (R10), X13
	PXOR  X13, X0
	MOVOU 0(BX), X9
	PXOR  X9, X0
	CMPQ  AX, $12
	JB    r1_128
	JE    r1_192
	ROUND1(AESDEC, 16)
	ROUND1(AESDEC, 32)

r1_192:
	ROUND1(AESDEC, 48)
	ROUND1(AESDEC, 64)

r1_128:
	ROUND1(AESDEC, 80)
	ROUND1(AESDEC, 96)
	ROUND1(AESDEC, 112)
	ROUND1(AESDEC, 128)
	ROUND1(AESDEC, 144)
	ROUND1(AESDEC, 160)
	ROUND1(AESDEC, 176)
	ROUND1(AESDEC, 192)
	ROUND1(AESDEC, 208)
	ROUND1(AESDECLAST, 224)
	PXOR  X13, X0
	MOVOU X0, (DI)
	ADDQ  $16, R10
	ADDQ  $16, SI
	ADDQ  $16, DI
	SUBQ  $16, R9
	JMP   blocks1

nextsector:
	DECQ  CX
	JNZ   sector

	// Do not leave tweaks in the dead stack frame.
	PXOR  X0, X0
	MOVOU X0, 0(SP)
	MOVOU X0, 16(SP)
	MOVOU X0, 32(SP)
	MOVOU X0, 48(SP)
	MOVOU X0, 64(SP)
	MOVOU X0, 80(SP)
	MOVOU X0, 96(SP)
	MOVOU X0, 112(SP)
	MOVOU X0, 128(SP)
	MOVOU X0, 144(SP)
	MOVOU X0, 160(SP)
	MOVOU X0, 176(SP)
	MOVOU X0, 192(SP)
	MOVOU X0, 208(SP)
	MOVOU X0, 224(SP)
	MOVOU X0, 240(SP)
	RET

// func xtsEncryptAESNI(nr int, rk, dst, src, tweaks *byte, n, sectorSize int)
// Requires: AES, SSE2
//
// The tweaks of the current 8 blocks are at (R10), those of the next 8 are
// computed during the middle rounds into (R11), so that the doubling chain
// overlaps the AES work; the two areas swap after every batch. When sectors
// are whole batches (every dm-crypt sector size), the last batch of a sector
// computes the first tweaks of the next one (R13 = 1), so no sector starts
// with a serial tweak computation.
TEXT ·xtsEncryptAESNI(SB), NOSPLIT, $256-56
	MOVQ  nr+0(FP), AX
	MOVQ  rk+8(FP), BX
	MOVQ  dst+16(FP), DI
	MOVQ  src+24(FP), SI
	MOVQ  tweaks+32(FP), DX
	MOVQ  n+40(FP), CX
	MOVQ  sectorSize+48(FP), R8
	MOVOU xtsDoubleMask<>(SB), X12
	MOVQ  R8, R12
	ANDQ  $127, R12 // R12 != 0: sectors end with single blocks
	XORQ  R13, R13

sector:
	MOVQ  R8, R9 // bytes left in the sector
	TESTQ R13, R13
	JNZ   sectortweaksdone
	MOVOU (DX), X8 // tweak of block 0
	ADDQ  $16, DX
	LEAQ  0(SP), R10
	LEAQ  128(SP), R11
	NEXT_TWEAK(0, R10)
	NEXT_TWEAK(16, R10)
	NEXT_TWEAK(32, R10)
	NEXT_TWEAK(48, R10)
	NEXT_TWEAK(64, R10)
	NEXT_TWEAK(80, R10)
	NEXT_TWEAK(96, R10)
	NEXT_TWEAK(112, R10)

sectortweaksdone:
	XORQ R13, R13

blocks8:
	CMPQ  R9, $128
	JB    blocks1
	JNE   batch8
	CMPQ  CX, $1
	JE    batch8
	TESTQ R12, R12
	JNZ   batch8
	MOVOU (DX), X8 // last batch: continue with the next sector's tweaks
	ADDQ  $16, DX
	MOVQ  $1, R13

batch8:
	MOVOU 0(SI), X0
	MOVOU 16(SI), X1
	MOVOU 32(SI), X2
	MOVOU 48(SI), X3
	MOVOU 64(SI), X4
	MOVOU 80(SI), X5
	MOVOU 96(SI), X6
	MOVOU 112(SI), X7
	TWEAKS_IN8
	MOVOU 0(BX), X9
	XOR8(X9)
	CMPQ  AX, $12
	JB    r8_128
	JE    r8_192
	ROUND8(AESENC, 16)
	ROUND8(AESENC, 32)

r8_192:
	ROUND8(AESENC, 48)
	ROUND8(AESENC, 64)

r8_128:
	ROUND8(AESENC, 80)
	NEXT_TWEAK(0, R11)
	ROUND8(AESENC, 96)
	NEXT_TWEAK(16, R11)
	ROUND8(AESENC, 112)
	NEXT_TWEAK(32, R11)
	ROUND8(AESENC, 128)
	NEXT_TWEAK(48, R11)
	ROUND8(AESENC, 144)
	NEXT_TWEAK(64, R11)
	ROUND8(AESENC, 160)
	NEXT_TWEAK(80, R11)
	ROUND8(AESENC, 176)
	NEXT_TWEAK(96, R11)
	ROUND8(AESENC, 192)
	NEXT_TWEAK(112, R11)
	ROUND8(AESENC, 208)
	MOVOU 224(BX), X9
	LAST8(AESENCLAST)
	MOVOU X0, 0(DI)
	MOVOU X1, 16(DI)
	MOVOU X2, 32(DI)
	MOVOU X3, 48(DI)
	MOVOU X4, 64(DI)
	MOVOU X5, 80(DI)
	MOVOU X6, 96(DI)
	MOVOU X7, 112(DI)
	XCHGQ R10, R11
	ADDQ  $128, SI
	ADDQ  $128, DI
	SUBQ  $128, R9
	JMP   blocks8

blocks1:
	// Fewer than 8 blocks left: their tweaks are at (R10).
	TESTQ R9, R9
	JZ    nextsector
	MOVOU (SI), X0
	MOVOU (R10), X13
	PXOR  X13, X0
	MOVOU 0(BX), X9
	PXOR  X9, X0
	CMPQ  AX, $12
	JB    r1_128
	JE    r1_192
	ROUND1(AESENC, 16)
	ROUND1(AESENC, 32)

r1_192:
	ROUND1(AESENC, 48)
	ROUND1(AESENC, 64)

r1_128:
	ROUND1(AESENC, 80)
	ROUND1(AESENC, 96)
	ROUND1(AESENC, 112)
	ROUND1(AESENC, 128)
	ROUND1(AESENC, 144)
	ROUND1(AESENC, 160)
	ROUND1(AESENC, 176)
	ROUND1(AESENC, 192)
	ROUND1(AESENC, 208)
	ROUND1(AESENCLAST, 224)
	PXOR  X13, X0
	MOVOU X0, (DI)
	ADDQ  $16, R10
	ADDQ  $16, SI
	ADDQ  $16, DI
	SUBQ  $16, R9
	JMP   blocks1

nextsector:
	DECQ  CX
	JNZ   sector

	// Do not leave tweaks in the dead stack frame.
	PXOR  X0, X0
	MOVOU X0, 0(SP)
	MOVOU X0, 16(SP)
	MOVOU X0, 32(SP)
	MOVOU X0, 48(SP)
	MOVOU X0, 64(SP)
	MOVOU X0, 80(SP)
	MOVOU X0, 96(SP)
	MOVOU X0, 112(SP)
	MOVOU X0, 128(SP)
	MOVOU X0, 144(SP)
	MOVOU X0, 160(SP)
	MOVOU X0, 176(SP)
	MOVOU X0, 192(SP)
	MOVOU X0, 208(SP)
	MOVOU X0, 224(SP)
	MOVOU X0, 240(SP)
	RET

// func xtsDecryptVAES(nr int, rk, dst, src, tweaks *byte, n, sectorSize int)
// Requires: AVX512F, AVX512BW, VAES, VPCLMULQDQ
TEXT ·xtsDecryptVAES(SB), NOSPLIT, $0-56
	MOVQ nr+0(FP), AX
	MOVQ rk+8(FP), BX
	MOVQ dst+16(FP), DI
	MOVQ src+24(FP), SI
	MOVQ tweaks+32(FP), DX
	MOVQ n+40(FP), CX
	MOVQ sectorSize+48(FP), R8
	LOADKEYS
	VBROADCASTI32X4 xtsPoly<>(SB), Z8
	VMOVDQU64       xtsLaneShl<>(SB), Z12
	VMOVDQU64       xtsLaneShr<>(SB), Z13

sector:
	SECTOR_TWEAKS
	ADDQ $16, DX
	MOVQ R8, R9

batch:
	VMOVDQU64  0(SI), Z0
	VMOVDQU64  64(SI), Z1
	VMOVDQU64  128(SI), Z2
	VMOVDQU64  192(SI), Z3
	VPTERNLOGQ $0x96, Z16, Z4, Z0 // block ^ tweak ^ round key 0
	VPTERNLOGQ $0x96, Z16, Z5, Z1
	VPTERNLOGQ $0x96, Z16, Z6, Z2
	VPTERNLOGQ $0x96, Z16, Z7, Z3
	CMPQ       AX, $12
	JB         r_128
	JE         r_192
	VROUND(VAESDEC, Z17)
	VROUND(VAESDEC, Z18)

r_192:
	VROUND(VAESDEC, Z19)
	VROUND(VAESDEC, Z20)

r_128:
	VROUND(VAESDEC, Z21)
	VROUND(VAESDEC, Z22)
	VROUND(VAESDEC, Z23)
	VROUND(VAESDEC, Z24)
	VROUND(VAESDEC, Z25)
	VROUND(VAESDEC, Z26)
	VROUND(VAESDEC, Z27)
	VROUND(VAESDEC, Z28)
	VROUND(VAESDEC, Z29)
	VROUND(VAESDECLAST, Z30)
	VPXORQ     Z4, Z0, Z0
	VPXORQ     Z5, Z1, Z1
	VPXORQ     Z6, Z2, Z2
	VPXORQ     Z7, Z3, Z3
	VMOVDQU64  Z0, 0(DI)
	VMOVDQU64  Z1, 64(DI)
	VMOVDQU64  Z2, 128(DI)
	VMOVDQU64  Z3, 192(DI)
	NEXT_TWEAKS
	ADDQ       $256, SI
	ADDQ       $256, DI
	SUBQ       $256, R9
	JNZ        batch

	DECQ CX
	JNZ  sector
	VZEROUPPER
	RET

// func xtsEncryptVAES(nr int, rk, dst, src, tweaks *byte, n, sectorSize int)
// Requires: AVX512F, AVX512BW, VAES, VPCLMULQDQ
TEXT ·xtsEncryptVAES(SB), NOSPLIT, $0-56
	MOVQ nr+0(FP), AX
	MOVQ rk+8(FP), BX
	MOVQ dst+16(FP), DI
	MOVQ src+24(FP), SI
	MOVQ tweaks+32(FP), DX
	MOVQ n+40(FP), CX
	MOVQ sectorSize+48(FP), R8
	LOADKEYS
	VBROADCASTI32X4 xtsPoly<>(SB), Z8
	VMOVDQU64       xtsLaneShl<>(SB), Z12
	VMOVDQU64       xtsLaneShr<>(SB), Z13

sector:
	SECTOR_TWEAKS
	ADDQ $16, DX
	MOVQ R8, R9

batch:
	VMOVDQU64  0(SI), Z0
	VMOVDQU64  64(SI), Z1
	VMOVDQU64  128(SI), Z2
	VMOVDQU64  192(SI), Z3
	VPTERNLOGQ $0x96, Z16, Z4, Z0 // block ^ tweak ^ round key 0
	VPTERNLOGQ $0x96, Z16, Z5, Z1
	VPTERNLOGQ $0x96, Z16, Z6, Z2
	VPTERNLOGQ $0x96, Z16, Z7, Z3
	CMPQ       AX, $12
	JB         r_128
	JE         r_192
	VROUND(VAESENC, Z17)
	VROUND(VAESENC, Z18)

r_192:
	VROUND(VAESENC, Z19)
	VROUND(VAESENC, Z20)

r_128:
	VROUND(VAESENC, Z21)
	VROUND(VAESENC, Z22)
	VROUND(VAESENC, Z23)
	VROUND(VAESENC, Z24)
	VROUND(VAESENC, Z25)
	VROUND(VAESENC, Z26)
	VROUND(VAESENC, Z27)
	VROUND(VAESENC, Z28)
	VROUND(VAESENC, Z29)
	VROUND(VAESENCLAST, Z30)
	VPXORQ     Z4, Z0, Z0
	VPXORQ     Z5, Z1, Z1
	VPXORQ     Z6, Z2, Z2
	VPXORQ     Z7, Z3, Z3
	VMOVDQU64  Z0, 0(DI)
	VMOVDQU64  Z1, 64(DI)
	VMOVDQU64  Z2, 128(DI)
	VMOVDQU64  Z3, 192(DI)
	NEXT_TWEAKS
	ADDQ       $256, SI
	ADDQ       $256, DI
	SUBQ       $256, R9
	JNZ        batch

	DECQ CX
	JNZ  sector
	VZEROUPPER
	RET

