#include "core/resident_memory.h"

#include <algorithm>
#include <cstdio>
#include <cstring>

#include <sys/resource.h>
#include <unistd.h>

namespace calq::core {

double resident_mb() {
  std::FILE* f = std::fopen("/proc/self/statm", "r");
  if (f == nullptr)
    return 0.0;
  long pages_total = 0, pages_resident = 0;
  const int read = std::fscanf(f, "%ld %ld", &pages_total, &pages_resident);
  std::fclose(f);
  if (read != 2)
    return 0.0;
  return static_cast<double>(pages_resident) * static_cast<double>(::sysconf(_SC_PAGESIZE)) /
         (1024.0 * 1024.0);
}

double peak_resident_mb() {
  struct rusage usage {};
  ::getrusage(RUSAGE_SELF, &usage);
  return static_cast<double>(usage.ru_maxrss) / 1024.0;  // Linux reports KiB
}

namespace {

// The first number in `path` after `key` ("" = at the start), or -1.
double read_number(const char* path, const char* key) {
  std::FILE* f = std::fopen(path, "r");
  if (f == nullptr)
    return -1.0;
  char line[256];
  double value = -1.0;
  const size_t key_length = std::strlen(key);
  while (std::fgets(line, sizeof line, f) != nullptr) {
    if (std::strncmp(line, key, key_length) == 0) {
      if (std::sscanf(line + key_length, "%lf", &value) != 1)
        value = -1.0;  // "max": no limit
      break;
    }
  }
  std::fclose(f);
  return value;
}

// The process's address space (VmSize), MiB.
double virtual_mb() {
  std::FILE* f = std::fopen("/proc/self/statm", "r");
  if (f == nullptr)
    return 0.0;
  long pages_total = 0;
  const int read = std::fscanf(f, "%ld", &pages_total);
  std::fclose(f);
  if (read != 1)
    return 0.0;
  return static_cast<double>(pages_total) * static_cast<double>(::sysconf(_SC_PAGESIZE)) /
         (1024.0 * 1024.0);
}

}  // namespace

double available_mb() {
  const double available_kb = read_number("/proc/meminfo", "MemAvailable:");
  double mb = available_kb > 0 ? available_kb / 1024.0 : 0.0;
  const double limit = read_number("/sys/fs/cgroup/memory.max", "");
  const double current = read_number("/sys/fs/cgroup/memory.current", "");
  const auto lower_to = [&mb](double headroom_mb) {
    mb = mb > 0 ? std::min(mb, headroom_mb) : headroom_mb;
  };
  if (limit > 0 && current >= 0)
    lower_to(std::max(0.0, limit - current) / (1024.0 * 1024.0));
  // An address-space limit (ulimit -v) fails allocations past it whatever memory is free.
  struct rlimit address_space {};
  if (::getrlimit(RLIMIT_AS, &address_space) == 0 && address_space.rlim_cur != RLIM_INFINITY) {
    lower_to(std::max(0.0, static_cast<double>(address_space.rlim_cur) / (1024.0 * 1024.0) -
                               virtual_mb()));
  }
  return mb;
}

}  // namespace calq::core
