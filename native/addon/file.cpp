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
  // The loader views the whole file as one Uint8Array, which V8 caps at 2^32 bytes; handing V8 a larger
  // external buffer aborts the process. Refuse it with a message instead.
  constexpr size_t kMaxMappedBytes = size_t{1} << 32;
  if (f.size > kMaxMappedBytes) {
    const size_t size = f.size;
    unmap_file(&f);
    throw Napi::RangeError::New(info.Env(), path + ": the file is " + std::to_string(size) +
                                                " bytes; bitllm maps model files of up to 4 GiB (4294967296 bytes)");
  }
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

// prepareWeights(buffer: ArrayBuffer, bytes) -> offset: readies a fresh (zero-filled, untouched) buffer
// of at least bytes + 2 MiB to hold `bytes` of weights at the returned 2 MiB-aligned offset, advised for
// transparent huge pages and faulted in (runtime/mmap.h). 0 when bytes < 2 MiB (nothing done).
Napi::Value prepare_weights_binding(const Napi::CallbackInfo& info) {
  Args a(info, "prepareWeights");
  if (info.Length() < 1 || !info[0].IsArrayBuffer()) a.type_error("buffer must be an ArrayBuffer");
  auto ab = info[0].As<Napi::ArrayBuffer>();
  const int64_t size = static_cast<int64_t>(ab.ByteLength());
  const int64_t bytes = a.integer(1, "bytes", 0, size);
  if (size == 0) return Napi::Number::New(info.Env(), 0);
  const size_t off = prepare_weights(static_cast<uint8_t*>(ab.Data()), static_cast<size_t>(size), static_cast<size_t>(bytes));
  return Napi::Number::New(info.Env(), static_cast<double>(off));
}

}  // namespace

void register_file(Napi::Env env, Napi::Object exports) {
  exports.Set("mapFile", Napi::Function::New(env, map_file_binding, "mapFile"));
  exports.Set("adviseMapping", Napi::Function::New(env, advise_binding, "adviseMapping"));
  exports.Set("prepareWeights", Napi::Function::New(env, prepare_weights_binding, "prepareWeights"));
  exports.Set("releaseFreeMemory", Napi::Function::New(env, release_free_memory, "releaseFreeMemory"));
}

}  // namespace bitllm
