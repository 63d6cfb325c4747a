// Qualifiers that let one inline function serve both the CPU and the CUDA kernels.
#pragma once

#if defined(__CUDACC__)
#define IPT_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define IPT_HOST_DEVICE inline
#endif
