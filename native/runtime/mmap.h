// Read-only memory mapping of model files.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace bitllm {

struct MappedFile {
  void* addr = nullptr;  // [size] bytes, read-only (MAP_PRIVATE)
  size_t size = 0;
};

// Maps the whole file read-only. Returns false with `err` set (naming the path) on failure.
// An empty file maps to {nullptr, 0}.
bool map_file(const std::string& path, MappedFile* out, std::string* err);
void unmap_file(MappedFile* f);
// Tells the kernel the byte range [offset, offset+length) of a mapping will not be needed soon
// (pages dropped from this process; file-backed, so they are re-read on the next access).
void advise_dont_need(void* addr, size_t offset, size_t length);
// Asks the kernel to read ahead the whole range.
void advise_will_need(void* addr, size_t offset, size_t length);
// Faults in the whole pages of fresh anonymous memory [addr, addr + length) for writing in one call
// (MADV_POPULATE_WRITE; a no-op where the kernel lacks it): one kernel entry instead of a fault per page.
void populate_write(void* addr, size_t length);

// Prepares zero-filled, not yet touched memory [p, p + size) (a fresh JS ArrayBuffer: the addon leaves
// the allocation to V8, so the garbage collector sees and frees it like any buffer) to hold `bytes` of
// weights that live as long as the model: returns the offset of the first 2 MiB boundary in it, from
// which `bytes` fit; those whole 2 MiB pages are advised MADV_HUGEPAGE, so streaming GEMVs take a TLB miss
// per 2 MiB instead of per 4 KiB (~20 % more read bandwidth on Zen 4, docs/benchmarks.md), and the range
// is faulted in by several threads. Returns 0 and advises nothing when bytes < 2 MiB or the aligned range
// does not fit. `huge` (optional) tells whether the advice was taken.
size_t prepare_weights(uint8_t* p, size_t size, size_t bytes, bool* huge = nullptr);

}  // namespace bitllm
