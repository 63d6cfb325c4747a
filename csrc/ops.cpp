// The op schemas, from the generated csrc/contract.h (ipt/ops/contract.py states them). Kernels
// register per device in cpu/ and cuda/; fake (meta) kernels and autograd are registered from Python
// (ipt/ops/_registrations.py).
#include <torch/library.h>

#include "contract.h"

TORCH_LIBRARY(ipt, m) {
  for (const char* schema : ipt::contract::kOpSchemas) m.def(schema);
}
