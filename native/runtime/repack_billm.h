// Load-time packing of BiLLM planes (lib/quantize/billm.ts BillmMatrix: salient mask, sign / group
// planes, compact residual bits, fp16 scalars) into the BR16 tile layout of kernels/billm.h. The
// TypeScript packer (lib/reference/billm.ts packBillmTiles) is the oracle: the bytes are identical.
// Sources are bounds-checked by the caller (addon); this trusts its sizes.
#pragma once
#include <cstdint>

#include "../kernels/billm.h"

namespace bitllm {

// Per-row byte offsets of each block's residual bits (ceil(nS_j / 8) bytes each): roff [nb + 1],
// roff[nb] = the row stride R of the residual plane; counts [nb] = nS_j.
void billm_residual_layout(const uint8_t* salient, int64_t K, int32_t* roff, int32_t* counts);

// Writes the whole of tiles [tile0, tile1) of `data` (BR16, geometry boff / ngroups from billm_geometry),
// zeros included (rows >= M and the bits billm.h leaves 0). Planes, row-major per row m:
//   signs, groups [M, K/8]  bit k & 7 of byte k >> 3 = column k (1 = +1; 1 = group B); read only at
//                           non-salient columns (signs also at salient ones: the first-order sign s1)
//   residual [M, R]         block j's bits from byte roff[j]: bit i = s2 of the i-th salient column
//   scalars [M, K/128, 8]   fp16
void pack_billm_br16(const uint8_t* salient, const uint8_t* signs, const uint8_t* groups, const uint8_t* residual,
                     const uint16_t* scalars, int64_t M, int64_t K, const int32_t* boff, const int32_t* ngroups,
                     const int32_t* roff, const int32_t* counts, uint8_t* data, int64_t tile0, int64_t tile1);

}  // namespace bitllm
