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

// Memory for model weights that live as long as the model: an anonymous mapping, 2 MiB-aligned and
// advised MADV_HUGEPAGE where it spans at least one huge page, so streaming GEMVs walk 2 MiB pages (on
// this class of machine ~20 % more read bandwidth than 4 KiB pages; see docs/benchmarks.md). Zero-filled.
// Returns nullptr when the mapping fails. `huge` (optional) tells whether the huge-page advice was taken.
void* alloc_weights(size_t bytes, bool* huge = nullptr);
void free_weights(void* p, size_t bytes);

}  // namespace bitllm
