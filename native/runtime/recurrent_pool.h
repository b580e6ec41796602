// The recurrent kind of the sequence-state pool (DESIGN.md §4, §8.4): sequences whose state has a fixed size
// whatever their length (Mamba-2's conv rows and SSM state per layer, plus a hybrid's attention K/V for up to
// max_seq_len positions). It has KvPool's contract (kv_pool.h) — create / fork / dispose / truncate / length /
// admit / stats / trim, KvPoolError codes, every check before any change — with the differences a recurrent
// state imposes: the budget is a number of sequences, a fork copies the whole state (a recurrent state forks
// at its end only), and truncate keeps the state whole (len = length) or clears it (len = 0), since a state
// cannot be cut back. A state is one allocation of state_bytes (64-byte aligned), zeroed when a sequence is
// created or cleared; a disposed sequence's memory is kept for reuse until trim().
#pragma once
#include <cstdint>
#include <unordered_map>
#include <vector>

#include "kv_pool.h"

namespace bitllm {

class RecurrentPool {
 public:
  // state_bytes: one sequence's state; max_sequences: the budget; max_seq_len: the most positions one sequence
  // may hold (the context size; a hybrid's KV caches are sized for it).
  RecurrentPool(int64_t state_bytes, int64_t max_sequences, int64_t max_seq_len);
  ~RecurrentPool();
  RecurrentPool(const RecurrentPool&) = delete;
  RecurrentPool& operator=(const RecurrentPool&) = delete;

  int64_t state_bytes() const { return bytes_; }
  int64_t max_seq_len() const { return max_len_; }

  int32_t create();
  int32_t fork(int32_t src);
  void dispose(int32_t id);
  void truncate(int32_t id, int64_t len);  // len == length (nothing changes) or 0 (a fresh state)
  int64_t length(int32_t id) const;
  bool live(int32_t id) const { return seqs_.count(id) != 0; }

  // Admits a batch's rows (seq[b], pos[b]) before a forward: every sequence is live, its rows have positions
  // length, length + 1, ... in row order, and none passes max_seq_len. Then it sets the lengths. All or
  // nothing.
  void admit(const int32_t* seq, const int32_t* pos, int64_t B);

  uint8_t* state(int32_t id) const;  // the sequence's state memory
  void trim();

  struct Stats {
    int64_t sequences, states_cached, states_max, state_bytes, tokens_held;
  };
  Stats stats() const;

 private:
  struct Seq {
    uint8_t* mem = nullptr;
    int64_t len = 0;
  };
  const Seq& get(int32_t id) const;
  uint8_t* take();  // a zeroed state (reused or new); KvPoolError kFull when the budget is spent

  int64_t bytes_, max_seqs_, max_len_;
  std::vector<uint8_t*> free_;
  int32_t next_id_ = 1;
  std::unordered_map<int32_t, Seq> seqs_;
};

}  // namespace bitllm
