// What this CPU (and the OS under it) lets the kernels use, and which kernel path they run.
//
// One owner for feature detection (cpuid, xgetbv, the AMX permission through arch_prctl) and
// for the choice of path: every kernel with more than one path (rpa, the model's matmul, the
// benchmark's ceilings) asks active_path() here instead of probing the CPU itself.
//
// Paths, from the plainest to the most specialised:
//   scalar     Highway's portable target (no SIMD intrinsics of its own)
//   avx2       f32 FMA on 256-bit vectors (Highway's AVX2 target)
//   avx512     f32 FMA on 512-bit vectors (Highway's AVX3 targets)
//   avx512bf16 bf16 dot products (vdpbf16ps) and int8 ones (VNNI) on 512-bit vectors
//   amx        the tile unit: bf16 and int8 tile products, AVX-512 for the rest
// A path includes what the paths before it use for work it has no kernel of its own for.
//
// KDR_CPU_PATH=<name> forces a path (tests run each path this way); a name this CPU or this
// build cannot run is an error that names the paths it can.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace kdr::cpu {

struct Features {
  std::string brand;  // "AMD EPYC 7B13", from cpuid's brand string
  bool avx2 = false, fma = false, f16c = false;
  bool avx512f = false, avx512bw = false, avx512vl = false, avx512dq = false;
  bool avx512_vnni = false, avx512_bf16 = false, avx512_fp16 = false, avx_vnni = false;
  bool amx_tile = false, amx_bf16 = false, amx_int8 = false;
  bool os_avx = false;     // XCR0: the OS saves ymm state
  bool os_avx512 = false;  // XCR0: the OS saves opmask and zmm state
  bool os_amx = false;     // XCR0: tile config and data are enabled (permission still needed)
};

// Detected once, on first use.
const Features& features();

enum class Path : int { kScalar = 0, kAvx2, kAvx512, kAvx512Bf16, kAmx };
inline constexpr int kNumPaths = 5;

const char* path_name(Path p);
// "scalar", "avx2", "avx512", "avx512bf16" (also "bf16"), "amx"; nullopt otherwise.
std::optional<Path> parse_path(std::string_view name);

// Asks Linux for the AMX tile data state (arch_prctl ARCH_REQ_XCOMP_PERM) once per process.
// False where the CPU has no AMX or the kernel refuses; kernels then fall back.
bool amx_permitted();

// Why this CPU, OS or build lacks what `p` needs ("the CPU has no avx512_bf16", "the kernel
// refused the AMX tile state", "this build compiled only the native SIMD target"), or empty.
// The benchmark's ceiling loops ask this: they run wherever the hardware has the unit.
std::string hardware_reason(Path p);

// Paths whose kernels have run on a CPU that has them: scalar, avx2, avx512. The avx512bf16
// and amx kernels were written and checked through an exact emulation of their instructions
// (tests/rpa_paths, tests/ops/matmul_amx_test.cc) but have not yet run on real hardware, so
// they are opt-in until a run on such a CPU checks them: KDR_UNVERIFIED_PATHS=1 admits them
// to best_path(), to KDR_CPU_PATH and to the per-path tests (which set KDR_CPU_PATH).
bool path_verified(Path p);

// hardware_reason(p), else for an unverified path without KDR_UNVERIFIED_PATHS=1 the reason it
// is held back; empty when `p` can run here.
std::string unavailable_reason(Path p);
inline bool path_available(Path p) { return unavailable_reason(p).empty(); }
// Every path that can run here, plainest first.
std::vector<Path> available_paths();
// The most specialised available path.
Path best_path();

// The path the kernels use: KDR_CPU_PATH when set, otherwise best_path(). The first call also
// restricts Highway's dynamic dispatch to the targets the path allows, so every Highway kernel
// (attention, matmul, activations) runs at that width. Throws std::runtime_error when
// KDR_CPU_PATH names an unknown path or one unavailable_reason() refuses.
Path active_path();
// Forces a path in this process (tests); throws like active_path() when it cannot run.
void set_active_path(Path p);

// One line for logs and benchmark headers: the CPU, its relevant features and the paths,
// e.g. "AMD EPYC 7B13 | avx2 fma f16c | paths scalar avx2 | active avx2".
std::string describe();

}  // namespace kdr::cpu
