#include "base/cpu_features.h"

#include <cstdlib>
#include <mutex>
#include <stdexcept>

#include "hwy/targets.h"

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#define KDR_X86 1
#endif
#if defined(__linux__)
#include <sys/syscall.h>
#include <unistd.h>
#endif

namespace kdr::cpu {
namespace {

#if KDR_X86
struct Regs {
  unsigned a = 0, b = 0, c = 0, d = 0;
};
Regs cpuid(unsigned leaf, unsigned sub) {
  Regs r;
  if (!__get_cpuid_count(leaf, sub, &r.a, &r.b, &r.c, &r.d)) return Regs{};
  return r;
}
uint64_t xcr0() {
  uint32_t lo = 0, hi = 0;
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  return (static_cast<uint64_t>(hi) << 32) | lo;
}
bool bit(unsigned v, int i) { return (v >> i) & 1u; }
#endif

Features detect() {
  Features f;
#if KDR_X86
  const Regs l1 = cpuid(1, 0);
  const bool osxsave = bit(l1.c, 27);
  const uint64_t x = osxsave ? xcr0() : 0;
  f.os_avx = (x & 0x6) == 0x6;
  f.os_avx512 = f.os_avx && (x & 0xe0) == 0xe0;
  f.os_amx = (x & (3u << 17)) == (3u << 17);
  f.fma = bit(l1.c, 12) && f.os_avx;
  f.f16c = bit(l1.c, 29) && f.os_avx;
  const Regs l7 = cpuid(7, 0);
  const Regs l71 = cpuid(7, 1);
  f.avx2 = bit(l7.b, 5) && f.os_avx;
  f.avx_vnni = bit(l71.a, 4) && f.os_avx;
  f.avx512f = bit(l7.b, 16) && f.os_avx512;
  f.avx512dq = bit(l7.b, 17) && f.os_avx512;
  f.avx512bw = bit(l7.b, 30) && f.os_avx512;
  f.avx512vl = bit(l7.b, 31) && f.os_avx512;
  f.avx512_vnni = bit(l7.c, 11) && f.os_avx512;
  f.avx512_bf16 = bit(l71.a, 5) && f.os_avx512;
  f.avx512_fp16 = bit(l7.d, 23) && f.os_avx512;
  f.amx_bf16 = bit(l7.d, 22) && f.os_amx;
  f.amx_tile = bit(l7.d, 24) && f.os_amx;
  f.amx_int8 = bit(l7.d, 25) && f.os_amx;
  if (cpuid(0x80000000u, 0).a >= 0x80000004u) {
    char brand[49] = {};
    for (unsigned i = 0; i < 3; ++i) {
      const Regs r = cpuid(0x80000002u + i, 0);
      const unsigned words[4] = {r.a, r.b, r.c, r.d};
      for (int w = 0; w < 4; ++w)
        for (int k = 0; k < 4; ++k)
          brand[i * 16 + w * 4 + k] = static_cast<char>(words[w] >> (8 * k));
    }
    f.brand = brand;
    while (!f.brand.empty() && f.brand.back() == ' ') f.brand.pop_back();
    while (!f.brand.empty() && f.brand.front() == ' ') f.brand.erase(0, 1);
  }
#endif
  if (f.brand.empty()) f.brand = "unknown CPU";
  return f;
}

bool request_amx() {
#if KDR_X86 && defined(__linux__) && defined(SYS_arch_prctl)
  constexpr int kArchGetXcompPerm = 0x1022;
  constexpr int kArchReqXcompPerm = 0x1023;
  constexpr unsigned long kXfeatureXtiledata = 18;
  const Features& f = features();
  if (!f.amx_tile) return false;
  if (syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) != 0) return false;
  unsigned long bitmask = 0;
  if (syscall(SYS_arch_prctl, kArchGetXcompPerm, &bitmask) != 0) return false;
  return (bitmask >> kXfeatureXtiledata) & 1u;
#else
  return false;
#endif
}

// Highway targets each path lets dynamic dispatch choose (0: no restriction).
int64_t hwy_mask(Path p) {
  switch (p) {
    case Path::kScalar:
      return HWY_EMU128 | HWY_SCALAR;
    case Path::kAvx2:
      return HWY_AVX2 | HWY_SSE4 | HWY_SSSE3 | HWY_EMU128 | HWY_SCALAR;
    default:
      return 0;
  }
}

std::mutex g_mu;
int g_active = -1;  // a Path once chosen

void apply(Path p) {
  const int64_t mask = hwy_mask(p);
  // 0 restores what the CPU supports (a test may switch back from a narrower path).
  hwy::SetSupportedTargetsForTest(mask);
  g_active = static_cast<int>(p);
}

std::string available_list() {
  std::string s;
  for (Path p : available_paths()) s += std::string(s.empty() ? "" : ", ") + path_name(p);
  return s;
}

}  // namespace

const Features& features() {
  static const Features f = detect();
  return f;
}

const char* path_name(Path p) {
  switch (p) {
    case Path::kScalar:
      return "scalar";
    case Path::kAvx2:
      return "avx2";
    case Path::kAvx512:
      return "avx512";
    case Path::kAvx512Bf16:
      return "avx512bf16";
    case Path::kAmx:
      return "amx";
  }
  return "?";
}

std::optional<Path> parse_path(std::string_view name) {
  if (name == "bf16") return Path::kAvx512Bf16;
  for (int i = 0; i < kNumPaths; ++i)
    if (name == path_name(static_cast<Path>(i))) return static_cast<Path>(i);
  return std::nullopt;
}

bool amx_permitted() {
  static const bool ok = request_amx();
  return ok;
}

bool path_verified(Path p) { return p <= Path::kAvx512; }

std::string unavailable_reason(Path p) {
  if (std::string why = hardware_reason(p); !why.empty()) return why;
  if (path_verified(p)) return "";
  const char* env = std::getenv("KDR_UNVERIFIED_PATHS");
  if (env != nullptr && std::string_view(env) == "1") return "";
  return "its kernels have not yet run on a CPU that has it (checked through an emulation "
         "only); KDR_UNVERIFIED_PATHS=1 runs them";
}

std::string hardware_reason(Path p) {
  const Features& f = features();
  const int64_t compiled = HWY_TARGETS;
  switch (p) {
    case Path::kScalar:
      if ((compiled & (HWY_EMU128 | HWY_SCALAR)) == 0)
        return "this build compiled only the native SIMD target (HWY_COMPILE_ONLY_STATIC)";
      return "";
    case Path::kAvx2:
      if (!f.avx2 || !f.fma) return "the CPU has no avx2/fma";
      if ((compiled & HWY_AVX2) == 0) return "this build did not compile Highway's AVX2 target";
      return "";
    case Path::kAvx512:
    case Path::kAvx512Bf16:
    case Path::kAmx: {
      if (!f.avx512f || !f.avx512bw || !f.avx512vl || !f.avx512dq)
        return "the CPU (or the OS) has no avx512f/bw/vl/dq";
      if ((compiled & (HWY_AVX3 | HWY_AVX3_DL)) == 0)
        return "this build did not compile Highway's AVX-512 targets";
      if (p == Path::kAvx512) return "";
      if (!f.avx512_bf16 || !f.avx512_vnni) return "the CPU has no avx512_bf16/avx512_vnni";
      if (p == Path::kAvx512Bf16) return "";
      if (!f.amx_tile || !f.amx_bf16 || !f.amx_int8)
        return "the CPU (or the OS) has no amx_tile/bf16/int8";
      if (!amx_permitted()) return "the kernel refused the AMX tile data state (arch_prctl)";
      return "";
    }
  }
  return "unknown path";
}

std::vector<Path> available_paths() {
  std::vector<Path> out;
  for (int i = 0; i < kNumPaths; ++i)
    if (path_available(static_cast<Path>(i))) out.push_back(static_cast<Path>(i));
  return out;
}

Path best_path() {
  const std::vector<Path> all = available_paths();
  return all.empty() ? Path::kScalar : all.back();
}

Path active_path() {
  std::lock_guard<std::mutex> lock(g_mu);
  if (g_active >= 0) return static_cast<Path>(g_active);
  Path p = best_path();
  if (const char* env = std::getenv("KDR_CPU_PATH"); env != nullptr && *env != '\0') {
    const std::optional<Path> forced = parse_path(env);
    if (!forced)
      throw std::runtime_error(std::string("KDR_CPU_PATH=") + env +
                               ": unknown path (scalar, avx2, avx512, avx512bf16, amx)");
    if (const std::string why = unavailable_reason(*forced); !why.empty())
      throw std::runtime_error(std::string("KDR_CPU_PATH=") + env + ": cannot run here: " + why +
                               " (this machine runs: " + available_list() + ")");
    p = *forced;
  }
  apply(p);
  return p;
}

void set_active_path(Path p) {
  if (const std::string why = unavailable_reason(p); !why.empty())
    throw std::runtime_error(std::string("cpu path ") + path_name(p) + " cannot run here: " + why);
  std::lock_guard<std::mutex> lock(g_mu);
  apply(p);
}

std::string describe() {
  const Features& f = features();
  std::string s = f.brand + " |";
  const std::pair<const char*, bool> flags[] = {{"avx2", f.avx2},
                                                {"fma", f.fma},
                                                {"f16c", f.f16c},
                                                {"avx512f", f.avx512f},
                                                {"avx512_vnni", f.avx512_vnni},
                                                {"avx512_bf16", f.avx512_bf16},
                                                {"avx512_fp16", f.avx512_fp16},
                                                {"avx_vnni", f.avx_vnni},
                                                {"amx_tile", f.amx_tile},
                                                {"amx_bf16", f.amx_bf16},
                                                {"amx_int8", f.amx_int8}};
  for (const auto& [name, on] : flags)
    if (on) s += std::string(" ") + name;
  s += " | paths";
  for (Path p : available_paths()) s += std::string(" ") + path_name(p);
  s += std::string(" | active ") + path_name(active_path());
  return s;
}

}  // namespace kdr::cpu
