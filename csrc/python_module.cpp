// The Python extension module ipt._C. Importing it runs the TORCH_LIBRARY registrations of the other
// translation units; the module itself only carries build facts, which ipt/ops checks at import.
#include <Python.h>

#ifndef IPT_TORCH_VERSION
#error "IPT_TORCH_VERSION must be defined by the build (setup.py passes it)"
#endif
#ifndef IPT_WITH_CUDA
#define IPT_WITH_CUDA 0
#endif

static struct PyModuleDef ipt_module = {
    PyModuleDef_HEAD_INIT, "_C", "IPT fused ops; they are registered as torch.ops.ipt.*", -1, nullptr,
};

PyMODINIT_FUNC PyInit__C(void) {
  PyObject* module = PyModule_Create(&ipt_module);
  if (module == nullptr) return nullptr;
  if (PyModule_AddStringConstant(module, "TORCH_VERSION", IPT_TORCH_VERSION) < 0 ||
      PyModule_AddIntConstant(module, "WITH_CUDA", IPT_WITH_CUDA) < 0) {
    Py_DECREF(module);
    return nullptr;
  }
  return module;
}
