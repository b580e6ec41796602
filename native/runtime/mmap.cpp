#include "mmap.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <thread>
#include <vector>

namespace bitllm {

bool map_file(const std::string& path, MappedFile* out, std::string* err) {
  *out = MappedFile();
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    *err = path + ": " + std::strerror(errno);
    return false;
  }
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    *err = path + ": " + std::strerror(errno);
    ::close(fd);
    return false;
  }
  if (!S_ISREG(st.st_mode)) {
    *err = path + ": not a regular file";
    ::close(fd);
    return false;
  }
  if (st.st_size == 0) {
    ::close(fd);
    return true;
  }
  void* p = ::mmap(nullptr, static_cast<size_t>(st.st_size), PROT_READ, MAP_PRIVATE, fd, 0);
  const int e = errno;
  ::close(fd);
  if (p == MAP_FAILED) {
    *err = path + ": mmap failed: " + std::strerror(e);
    return false;
  }
  out->addr = p;
  out->size = static_cast<size_t>(st.st_size);
  return true;
}

void unmap_file(MappedFile* f) {
  if (f->addr) ::munmap(f->addr, f->size);
  *f = MappedFile();
}

namespace {
void advise(void* addr, size_t offset, size_t length, int advice) {
  const size_t page = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
  uintptr_t begin = reinterpret_cast<uintptr_t>(addr) + offset;
  uintptr_t end = begin + length;
  begin = (begin + page - 1) / page * page;  // only whole pages inside the range
  end = end / page * page;
  if (end > begin) ::madvise(reinterpret_cast<void*>(begin), end - begin, advice);
}
}  // namespace

void advise_dont_need(void* addr, size_t offset, size_t length) { advise(addr, offset, length, MADV_DONTNEED); }
void advise_will_need(void* addr, size_t offset, size_t length) { advise(addr, offset, length, MADV_WILLNEED); }
void populate_write(void* addr, size_t length) {
#if defined(__linux__)
#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23  // Linux 5.14; the Debian 11 headers of the prebuilds predate it
#endif
  advise(addr, 0, length, MADV_POPULATE_WRITE);  // older kernels refuse it (EINVAL): a no-op
#else
  (void)addr;
  (void)length;
#endif
}

namespace {
constexpr size_t kHugePage = size_t{2} << 20;
}  // namespace

// Faults the whole range in now, from several threads at once. Every byte of a weight buffer is written
// by the repacker that fills it anyway; faulting it here splits the kernel's work (zeroing, and in a VM
// the host's backing of fresh guest memory: ~1-2 ms per 2 MiB page on a Firecracker guest) over the
// cores instead of leaving it to one loader thread.
static void populate(uint8_t* p, size_t len) {
  constexpr size_t kPerThreadMin = size_t{16} << 20;
  const size_t hw = std::max(1u, std::thread::hardware_concurrency());
  const size_t threads = std::min<size_t>({hw, 8, len / kPerThreadMin});
  const size_t page = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
  auto touch = [p, len, page](size_t t, size_t n) {
    const size_t pages = len / page;
    // The memory is zero-filled and not yet shared: storing a zero into each page faults it in.
    for (size_t i = pages * t / n; i < pages * (t + 1) / n; ++i) reinterpret_cast<volatile uint8_t*>(p)[i * page] = 0;
  };
  if (threads < 2) return;  // small: the first writes fault it in as cheaply
  std::vector<std::thread> pool;
  pool.reserve(threads - 1);
  for (size_t t = 1; t < threads; ++t) pool.emplace_back(touch, t, threads);
  touch(0, threads);
  for (auto& th : pool) th.join();
}

size_t prepare_weights(uint8_t* p, size_t size, size_t bytes, bool* huge) {
  if (huge) *huge = false;
  if (!p || bytes < kHugePage || bytes > size) return 0;
  const uintptr_t r = reinterpret_cast<uintptr_t>(p);
  const size_t off = static_cast<size_t>(((r + kHugePage - 1) & ~(uintptr_t{kHugePage} - 1)) - r);
  if (off + bytes > size) return 0;
  uint8_t* a = p + off;
#ifdef MADV_HUGEPAGE
  // Whole huge pages only: the tail past the last 2 MiB boundary may share a page with other memory.
  const size_t whole = bytes / kHugePage * kHugePage;
  const bool ok = ::madvise(a, whole, MADV_HUGEPAGE) == 0;
  if (huge) *huge = ok;
#endif
  populate(a, bytes);
  return off;
}

}  // namespace bitllm
