// The sequence-state pool; see kv_pool.h.
#include "kv_pool.h"

#include "mmap.h"

#include <algorithm>
#include <cstdlib>
#include <unordered_map>
#include <cstring>
#include <new>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace bitllm {

namespace {
[[noreturn]] void fail(KvPoolError::Code c, std::string m) { throw KvPoolError{c, std::move(m)}; }
int64_t blocks_for(int64_t len) { return (len + kKvBlockTokens - 1) / kKvBlockTokens; }
}  // namespace

KvPool::KvPool(const KvLayout& layout, int64_t max_tokens, int64_t max_seq_len)
    : lay_(layout), max_blocks_(blocks_for(max_tokens)), max_len_(max_seq_len) {
  if (max_tokens < 1 || max_seq_len < 1) fail(KvPoolError::kBadArgument, "the token budget and context size must be >= 1");
  if (max_blocks_ > (int64_t{1} << 30)) fail(KvPoolError::kBadArgument, "the token budget is too large");
}

KvPool::~KvPool() {
  for (uint8_t* m : mem_) std::free(m);
}

const KvPool::Seq& KvPool::get(int32_t id) const {
  auto it = seqs_.find(id);
  if (it == seqs_.end()) fail(KvPoolError::kUnknownSequence, "sequence " + std::to_string(id) + " does not exist (disposed?)");
  return it->second;
}
KvPool::Seq& KvPool::get(int32_t id) { return const_cast<Seq&>(static_cast<const KvPool*>(this)->get(id)); }

int32_t KvPool::create() {
  if (next_id_ == INT32_MAX) fail(KvPoolError::kBadArgument, "sequence ids exhausted");
  const int32_t id = next_id_++;
  seqs_.emplace(id, Seq{});
  return id;
}

int32_t KvPool::fork(int32_t src) {
  Seq copy = get(src);
  if (next_id_ == INT32_MAX) fail(KvPoolError::kBadArgument, "sequence ids exhausted");
  for (int32_t b : copy.blocks) ++refs_[b];
  const int32_t id = next_id_++;
  seqs_.emplace(id, std::move(copy));
  return id;
}

void KvPool::release(int32_t b) {
  if (--refs_[b] == 0) {
    free_.push_back(b);
    --used_;
  }
}

void KvPool::dispose(int32_t id) {
  Seq& s = get(id);
  for (int32_t b : s.blocks) release(b);
  seqs_.erase(id);
}

void KvPool::truncate(int32_t id, int64_t len) {
  Seq& s = get(id);
  if (len < 0 || len > s.len)
    fail(KvPoolError::kBadPosition, "truncate(" + std::to_string(len) + "): sequence " + std::to_string(id) + " holds " +
                                        std::to_string(s.len) + " positions");
  const size_t keep = static_cast<size_t>(blocks_for(len));
  for (size_t j = keep; j < s.blocks.size(); ++j) release(s.blocks[j]);
  s.blocks.resize(keep);
  s.ptrs.resize(keep);
  s.len = len;
}

int64_t KvPool::length(int32_t id) const { return get(id).len; }

void KvPool::admit(const int32_t* seq, const int32_t* pos, int64_t B) {
  // 1. Rows: live sequences, contiguous positions, within the context.
  std::unordered_map<int32_t, int64_t> next;  // sequence -> next position expected
  for (int64_t b = 0; b < B; ++b) {
    auto it = next.find(seq[b]);
    if (it == next.end()) {
      if (!live(seq[b]))
        fail(KvPoolError::kUnknownSequence, "rows[" + std::to_string(b) + "]: sequence " + std::to_string(seq[b]) +
                                                " does not exist (disposed?)");
      it = next.emplace(seq[b], get(seq[b]).len).first;
    }
    if (pos[b] != it->second)
      fail(KvPoolError::kBadPosition, "rows[" + std::to_string(b) + "]: sequence " + std::to_string(seq[b]) + " position " +
                                          std::to_string(pos[b]) + ", expected " + std::to_string(it->second) +
                                          " (a sequence's rows continue its positions in row order)");
    if (++it->second > max_len_)
      fail(KvPoolError::kTooLong, "rows[" + std::to_string(b) + "]: sequence " + std::to_string(seq[b]) + " position " +
                                      std::to_string(pos[b]) + " is past the context size " + std::to_string(max_len_));
  }
  // 2. Blocks needed: new ones past the table, and copies of shared ones that will be written. A shared block
  //    with r holders written by w sequences of this batch takes min(w, r - 1) copies: the commit below copies
  //    for each writer while others still hold the block, and the last holder writes it in place (a sequence
  //    and its fork both extending their shared last block in one step: one copy, not two).
  int64_t need = 0;
  std::unordered_map<int32_t, int32_t> writers;  // shared block -> sequences of this batch writing it
  for (const auto& [id, end] : next) {
    const Seq& s = get(id);
    if (end == s.len) continue;
    const int64_t j0 = s.len / kKvBlockTokens, j1 = blocks_for(end);
    for (int64_t j = j0; j < j1; ++j) {
      if (j >= static_cast<int64_t>(s.blocks.size())) ++need;
      else if (refs_[s.blocks[j]] > 1) ++writers[s.blocks[j]];
    }
  }
  for (const auto& [b, w] : writers) need += std::min<int64_t>(w, refs_[b] - 1);
  if (used_ + need > max_blocks_)
    fail(KvPoolError::kFull, "the KV pool is full: the batch needs " + std::to_string(need) + " more blocks of " +
                                 std::to_string(kKvBlockTokens) + " positions, " + std::to_string(max_blocks_ - used_) +
                                 " of " + std::to_string(max_blocks_) + " are free");
  // 3. Take the blocks (allocating memory for them) before changing anything else.
  std::vector<int32_t> got;
  got.reserve(static_cast<size_t>(need));
  try {
    for (int64_t i = 0; i < need; ++i) {
      int32_t b;
      if (!free_.empty()) {
        b = free_.back();
        free_.pop_back();
      } else {
        b = static_cast<int32_t>(mem_.size());
        mem_.push_back(nullptr);
        refs_.push_back(0);
      }
      got.push_back(b);
      if (!mem_[b]) {
        mem_[b] = static_cast<uint8_t*>(std::malloc(static_cast<size_t>(lay_.block_bytes())));
        if (!mem_[b]) throw std::bad_alloc();
        // Its pages now, in one call, rather than a fault per page in the step's first store to each
        // (a block is 1.2 MB, 300 pages, at the 2B-4T shape; every page is written within its 16 positions).
        populate_write(mem_[b], static_cast<size_t>(lay_.block_bytes()));
      }
    }
  } catch (const std::bad_alloc&) {
    for (int32_t b : got) free_.push_back(b);
    fail(KvPoolError::kFull, "cannot allocate " + std::to_string(need) + " KV blocks of " +
                                 std::to_string(lay_.block_bytes()) + " bytes");
  }
  // 4. Commit: nothing below fails.
  size_t gi = 0;
  for (const auto& [id, end] : next) {
    Seq& s = get(id);
    if (end == s.len) continue;
    const int64_t j0 = s.len / kKvBlockTokens, j1 = blocks_for(end);
    for (int64_t j = j0; j < j1; ++j) {
      if (j >= static_cast<int64_t>(s.blocks.size())) {
        const int32_t b = got[gi++];
        refs_[b] = 1;
        ++used_;
        s.blocks.push_back(b);
        s.ptrs.push_back(mem_[b]);
      } else if (refs_[s.blocks[j]] > 1) {  // copy-on-write
        const int32_t b = got[gi++], old = s.blocks[j];
        std::memcpy(mem_[b], mem_[old], static_cast<size_t>(lay_.block_bytes()));
        refs_[b] = 1;
        ++used_;
        --refs_[old];  // still > 0: another sequence holds it
        s.blocks[j] = b;
        s.ptrs[j] = mem_[b];
      }
    }
    s.len = end;
  }
  // Every block taken was used (the count above is exact); should that ever not hold, none may leak.
  for (; gi < got.size(); ++gi) free_.push_back(got[gi]);
}

const void* const* KvPool::table(int32_t id) const { return get(id).ptrs.data(); }

uint8_t* KvPool::block_of(int32_t id, int64_t pos) const {
  const Seq& s = get(id);
  return mem_[s.blocks[static_cast<size_t>(pos / kKvBlockTokens)]];
}

void KvPool::trim() {
  bool freed = false;
  for (int32_t b : free_) {
    freed |= mem_[b] != nullptr;
    std::free(mem_[b]);
    mem_[b] = nullptr;
  }
#if defined(__GLIBC__)
  // Blocks are below glibc's mmap threshold: free() keeps their pages in the heap. Hand them back to the system.
  if (freed) malloc_trim(0);
#endif
}

KvPool::Stats KvPool::stats() const {
  int64_t cached = 0, held = 0;
  for (int32_t b : free_) cached += mem_[b] != nullptr;
  for (const auto& kv : seqs_) held += kv.second.len;
  return Stats{static_cast<int64_t>(seqs_.size()), used_, cached, max_blocks_, kKvBlockTokens, lay_.block_bytes(), held};
}

}  // namespace bitllm
