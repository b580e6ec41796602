// The recurrent kind of the sequence-state pool; see recurrent_pool.h.
#include "recurrent_pool.h"

#include <cstdlib>
#include <cstring>
#include <new>
#include <string>
#include <unordered_map>

namespace bitllm {

namespace {
[[noreturn]] void fail(KvPoolError::Code c, std::string m) { throw KvPoolError{c, std::move(m)}; }
constexpr size_t kAlign = 64;
}  // namespace

RecurrentPool::RecurrentPool(int64_t state_bytes, int64_t max_sequences, int64_t max_seq_len)
    : bytes_(state_bytes), max_seqs_(max_sequences), max_len_(max_seq_len) {
  if (state_bytes < 1 || max_sequences < 1 || max_seq_len < 1)
    fail(KvPoolError::kBadArgument, "the state size, sequence budget and context size must be >= 1");
  if (max_sequences > (int64_t{1} << 20)) fail(KvPoolError::kBadArgument, "the sequence budget is too large");
}

RecurrentPool::~RecurrentPool() {
  for (uint8_t* m : free_) std::free(m);
  for (auto& kv : seqs_) std::free(kv.second.mem);
}

const RecurrentPool::Seq& RecurrentPool::get(int32_t id) const {
  auto it = seqs_.find(id);
  if (it == seqs_.end()) fail(KvPoolError::kUnknownSequence, "sequence " + std::to_string(id) + " does not exist (disposed?)");
  return it->second;
}

uint8_t* RecurrentPool::take() {
  if (static_cast<int64_t>(seqs_.size()) >= max_seqs_)
    fail(KvPoolError::kFull, "the state pool is full: it holds " + std::to_string(max_seqs_) +
                                 " sequence(s), each a fixed-size recurrent state");
  if (next_id_ == INT32_MAX) fail(KvPoolError::kBadArgument, "sequence ids exhausted");
  uint8_t* m = nullptr;
  if (!free_.empty()) {
    m = free_.back();
    free_.pop_back();
  } else {
    const size_t n = (static_cast<size_t>(bytes_) + kAlign - 1) / kAlign * kAlign;
    m = static_cast<uint8_t*>(std::aligned_alloc(kAlign, n));
    if (!m) fail(KvPoolError::kFull, "cannot allocate a recurrent state of " + std::to_string(bytes_) + " bytes");
  }
  std::memset(m, 0, static_cast<size_t>(bytes_));
  return m;
}

int32_t RecurrentPool::create() {
  uint8_t* m = take();
  const int32_t id = next_id_++;
  seqs_.emplace(id, Seq{m, 0});
  return id;
}

int32_t RecurrentPool::fork(int32_t src) {
  const Seq from = get(src);
  uint8_t* m = take();
  std::memcpy(m, from.mem, static_cast<size_t>(bytes_));
  const int32_t id = next_id_++;
  seqs_.emplace(id, Seq{m, from.len});
  return id;
}

void RecurrentPool::dispose(int32_t id) {
  const Seq s = get(id);
  try {
    free_.push_back(s.mem);
  } catch (const std::bad_alloc&) {
    std::free(s.mem);
  }
  seqs_.erase(id);
}

void RecurrentPool::truncate(int32_t id, int64_t len) {
  const Seq& s = get(id);
  if (len < 0 || len > s.len)
    fail(KvPoolError::kBadPosition, "truncate(" + std::to_string(len) + "): sequence " + std::to_string(id) + " holds " +
                                        std::to_string(s.len) + " positions");
  if (len == s.len) return;
  if (len != 0)
    fail(KvPoolError::kBadPosition, "truncate(" + std::to_string(len) + "): sequence " + std::to_string(id) +
                                        " has a recurrent (Mamba-2) state of " + std::to_string(s.len) +
                                        " positions, which can be kept whole or cleared, not cut back");
  std::memset(s.mem, 0, static_cast<size_t>(bytes_));
  seqs_[id].len = 0;
}

int64_t RecurrentPool::length(int32_t id) const { return get(id).len; }

uint8_t* RecurrentPool::state(int32_t id) const { return get(id).mem; }

void RecurrentPool::admit(const int32_t* seq, const int32_t* pos, int64_t B) {
  std::unordered_map<int32_t, int64_t> next;
  for (int64_t b = 0; b < B; ++b) {
    const Seq& s = get(seq[b]);
    auto it = next.find(seq[b]);
    const int64_t want = it == next.end() ? s.len : it->second;
    if (pos[b] != want)
      fail(KvPoolError::kBadPosition, "rows[" + std::to_string(b) + "]: sequence " + std::to_string(seq[b]) + " position " +
                                          std::to_string(pos[b]) + ", expected " + std::to_string(want) +
                                          " (a sequence's rows continue its positions in row order)");
    if (want + 1 > max_len_)
      fail(KvPoolError::kTooLong, "rows[" + std::to_string(b) + "]: sequence " + std::to_string(seq[b]) + " position " +
                                      std::to_string(pos[b]) + " is past the context size " + std::to_string(max_len_));
    next[seq[b]] = want + 1;
  }
  for (const auto& kv : next) seqs_[kv.first].len = kv.second;
}

void RecurrentPool::trim() {
  for (uint8_t* m : free_) std::free(m);
  free_.clear();
  free_.shrink_to_fit();
}

RecurrentPool::Stats RecurrentPool::stats() const {
  Stats st{static_cast<int64_t>(seqs_.size()), static_cast<int64_t>(free_.size()), max_seqs_, bytes_, 0};
  for (const auto& kv : seqs_) st.tokens_held += kv.second.len;
  return st;
}

}  // namespace bitllm
