// The bf16 kernels on the scalar emulation of their instructions (bf16_isa_emulated.h): runs
// on any CPU, selected by the tests through rpa::bf16::set_emulation().
#include "rpa/bf16_isa_emulated.h"

#define RPA_BF16_NS emulated
#include "rpa/bf16_attention-inl.h"

namespace rpa::bf16 {

const Kernels& emulated_kernels() { return emulated::kernels<EmulatedIsa>(); }

}  // namespace rpa::bf16
