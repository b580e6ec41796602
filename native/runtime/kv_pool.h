// The sequence-state pool of one model (DESIGN.md §4): the KV caches of many sequences in fixed-size
// blocks of kKvBlockTokens positions, taken from a pool with a token budget; a block table per
// sequence; prefix blocks shared between forks with reference counts and copied on the first write
// (copy-on-write). Memory grows with the blocks in use (a freed block is kept for reuse until trim()).
//
// Block layout (one allocation per block, all layers): [n_layer][K, V][n_kv_heads][kKvBlockTokens][row]
// with row = head_dim halves (f16), q8_row_bytes(head_dim) or q3_row_bytes(head_dim) bytes. The K rows
// of layer l in block j start at block_j + k_off(l): exactly a page of kernels/ops.h's KvPages, so the
// attention kernels read the cache through the sequence's block table.
//
// Block size: 16 positions = kAttnBlock, the tile the attention kernels read K/V in, so a tile never
// straddles two blocks and the paged kernels compute exactly what the flat ones do; 16 is also the
// granularity of prefix sharing and the worst-case waste per sequence (15 positions). A block of the
// 2B-4T shape (30 layers, 5 kv heads, hd 128, f16) is 600 KiB.
//
// Errors are KvPoolError (code, message); a failing call changes nothing.
#pragma once
#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

#include "attention_run.h"

namespace bitllm {

constexpr int64_t kKvBlockTokens = 16;
static_assert(kKvBlockTokens % kAttnBlock == 0, "attention tiles must not straddle blocks");

struct KvPoolError {
  enum Code : int { kUnknownSequence = 0, kBadPosition = 1, kFull = 2, kTooLong = 3, kBadArgument = 4 };
  Code code;
  std::string message;
};

struct KvLayout {
  KvKind kind = KvKind::f16;
  int64_t n_layer = 0, n_kv_heads = 0, head_dim = 0;
  int64_t row_bytes() const {
    return kind == KvKind::q8 ? q8_row_bytes(head_dim) : kind == KvKind::q3 ? q3_row_bytes(head_dim) : 2 * head_dim;
  }
  int64_t plane_bytes() const { return n_kv_heads * kKvBlockTokens * row_bytes(); }
  int64_t block_bytes() const { return 2 * n_layer * plane_bytes(); }
  int64_t k_off(int64_t l) const { return 2 * l * plane_bytes(); }
  int64_t v_off(int64_t l) const { return (2 * l + 1) * plane_bytes(); }
};

class KvPool {
 public:
  // max_tokens: the budget (rounded up to whole blocks); max_seq_len: the most positions one sequence
  // may hold (the model's context size).
  KvPool(const KvLayout& layout, int64_t max_tokens, int64_t max_seq_len);
  ~KvPool();
  KvPool(const KvPool&) = delete;
  KvPool& operator=(const KvPool&) = delete;

  const KvLayout& layout() const { return lay_; }
  int64_t max_seq_len() const { return max_len_; }

  int32_t create();                         // an empty sequence
  int32_t fork(int32_t src);                // same positions, sharing every block (copy-on-write)
  void dispose(int32_t id);                 // its blocks return to the pool
  void truncate(int32_t id, int64_t len);   // keeps positions [0, len), len <= length
  int64_t length(int32_t id) const;         // positions held
  bool live(int32_t id) const { return seqs_.count(id) != 0; }

  // Admits a batch's rows (seq[b], pos[b]) before a forward: every sequence is live, the rows of a
  // sequence have positions length, length + 1, ... in row order, no sequence passes max_seq_len, and
  // the blocks the new positions need (new blocks, copies of shared ones) fit the budget. Then it
  // allocates them, copies shared blocks that will be written, and sets the lengths. All or nothing:
  // on error nothing changed.
  void admit(const int32_t* seq, const int32_t* pos, int64_t B);

  // After admit: the block table of a sequence (block memory pointers, one per kKvBlockTokens
  // positions) and the block a position of it lives in (exclusively owned once admitted).
  const void* const* table(int32_t id) const;
  uint8_t* block_of(int32_t id, int64_t pos) const;

  void trim();  // frees the memory of unused blocks

  struct Stats {
    int64_t sequences, blocks_used, blocks_cached, blocks_max, block_tokens, block_bytes, tokens_held;
  };
  Stats stats() const;

 private:
  struct Seq {
    std::vector<int32_t> blocks;   // block ids
    std::vector<const void*> ptrs;  // their memory, the table the kernels read
    int64_t len = 0;
  };
  const Seq& get(int32_t id) const;
  Seq& get(int32_t id);
  void release(int32_t block);

  KvLayout lay_;
  int64_t max_blocks_, max_len_;
  std::vector<uint8_t*> mem_;     // per block id (nullptr once trimmed)
  std::vector<int32_t> refs_;     // per block id
  std::vector<int32_t> free_;     // unused block ids
  int64_t used_ = 0;
  int32_t next_id_ = 1;
  std::unordered_map<int32_t, Seq> seqs_;
};

}  // namespace bitllm
