#include "mmap.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

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

}  // namespace bitllm
