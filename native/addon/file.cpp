// File mapping bindings: model files are read through a read-only mmap, never copied into the JS heap.
#include "common.h"
#include "runtime/mmap.h"

#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace bitllm {

namespace {

// mapFile(path) -> ArrayBuffer over the mapped file (unmapped when the buffer is collected).
Napi::Value map_file_binding(const Napi::CallbackInfo& info) {
  Args a(info, "mapFile");
  if (info.Length() < 1 || !info[0].IsString()) a.type_error("path must be a string");
  const std::string path = info[0].As<Napi::String>().Utf8Value();
  MappedFile f;
  std::string err;
  if (!map_file(path, &f, &err)) throw Napi::Error::New(info.Env(), err);
  if (f.size == 0) return Napi::ArrayBuffer::New(info.Env(), 0);
  auto* hint = new MappedFile(f);
  return Napi::ArrayBuffer::New(
      info.Env(), f.addr, f.size,
      [](Napi::Env, void*, MappedFile* m) {
        unmap_file(m);
        delete m;
      },
      hint);
}

// adviseMapping(buffer: ArrayBuffer, offset, length, 'dontneed'|'willneed')
Napi::Value advise_binding(const Napi::CallbackInfo& info) {
  Args a(info, "adviseMapping");
  if (info.Length() < 1 || !info[0].IsArrayBuffer()) a.type_error("buffer must be an ArrayBuffer");
  auto ab = info[0].As<Napi::ArrayBuffer>();
  const int64_t size = static_cast<int64_t>(ab.ByteLength());
  const int64_t offset = a.integer(1, "offset", 0, size);
  const int64_t length = a.integer(2, "length", 0, size - offset);
  if (info.Length() < 4 || !info[3].IsString()) a.type_error("advice must be 'dontneed' or 'willneed'");
  const std::string advice = info[3].As<Napi::String>().Utf8Value();
  if (advice != "dontneed" && advice != "willneed") a.range_error("advice must be 'dontneed' or 'willneed'");
  if (size > 0 && length > 0) {
    if (advice == "dontneed")
      advise_dont_need(ab.Data(), static_cast<size_t>(offset), static_cast<size_t>(length));
    else
      advise_will_need(ab.Data(), static_cast<size_t>(offset), static_cast<size_t>(length));
  }
  return info.Env().Undefined();
}

// releaseFreeMemory() -> boolean: hands the allocator's free pages back to the OS (glibc malloc_trim).
// Loading repacks tensor by tensor through temporary buffers; glibc's growing mmap threshold keeps
// their freed pages in the heap, tens of MB of resident memory that nothing uses. False where the
// allocator has no such call.
Napi::Value release_free_memory(const Napi::CallbackInfo& info) {
#if defined(__GLIBC__)
  ::malloc_trim(0);
  return Napi::Boolean::New(info.Env(), true);
#else
  return Napi::Boolean::New(info.Env(), false);
#endif
}

// allocWeights(bytes) -> ArrayBuffer, zero-filled, for weights that live as long as the model (repacked
// layers, heads): 2 MiB-aligned anonymous memory advised for transparent huge pages (runtime/mmap.h).
// Freed when the buffer is collected; V8 is told of the external size so GC pressure stays honest.
Napi::Value alloc_weights_binding(const Napi::CallbackInfo& info) {
  Args a(info, "allocWeights");
  const int64_t bytes = a.integer(0, "bytes", 0, int64_t{1} << 46);
  Napi::Env env = info.Env();
  if (bytes == 0) return Napi::ArrayBuffer::New(env, 0);
  const size_t n = static_cast<size_t>(bytes);
  void* p = alloc_weights(n);
  if (!p) throw Napi::Error::New(env, "allocWeights: could not map " + std::to_string(n) + " bytes");
  Napi::MemoryManagement::AdjustExternalMemory(env, bytes);
  return Napi::ArrayBuffer::New(
      env, p, n,
      [](Napi::Env e, void* data, size_t* len) {
        free_weights(data, *len);
        Napi::MemoryManagement::AdjustExternalMemory(e, -static_cast<int64_t>(*len));
        delete len;
      },
      new size_t(n));
}

}  // namespace

void register_file(Napi::Env env, Napi::Object exports) {
  exports.Set("mapFile", Napi::Function::New(env, map_file_binding, "mapFile"));
  exports.Set("adviseMapping", Napi::Function::New(env, advise_binding, "adviseMapping"));
  exports.Set("allocWeights", Napi::Function::New(env, alloc_weights_binding, "allocWeights"));
  exports.Set("releaseFreeMemory", Napi::Function::New(env, release_free_memory, "releaseFreeMemory"));
}

}  // namespace bitllm
