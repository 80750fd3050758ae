// Kernels for selftest.py: one correct reduction, and one kernel per kind of bug the
// emulator is meant to report.  Written like minires's kernels (no headers).

template <typename T>
__global__ void block_sum_kernel(const T* __restrict__ x, T* __restrict__ out, int n)
{
    __shared__ T part[32];
    const T* row = x + (long long)blockIdx.x * n;
    T v = T(0);
    for (int i = threadIdx.x; i < n; i += blockDim.x) v += row[i];
    for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_down_sync(0xffffffffu, v, offset);
    if ((threadIdx.x & 31) == 0) part[threadIdx.x >> 5] = v;
    __syncthreads();
    if (threadIdx.x < 32) {
        v = threadIdx.x < (blockDim.x >> 5) ? part[threadIdx.x] : T(0);
        for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_down_sync(0xffffffffu, v, offset);
        if (threadIdx.x == 0) out[blockIdx.x] = v;
    }
}

// out[i] = x[(i + 1) % 64] through shared memory -- but without the __syncthreads()
// between the writes and the reads.  (64 threads per block.)
__global__ void missing_sync_kernel(const float* __restrict__ x, float* __restrict__ out)
{
    __shared__ float tile[64];
    const int base = blockIdx.x * 64;
    tile[threadIdx.x] = x[base + threadIdx.x];
    out[base + threadIdx.x] = tile[(threadIdx.x + 1) % 64];
}

// Reads a shared slot no thread writes (slot 32 and up, with 32 threads).
__global__ void uninitialised_shared_kernel(float* __restrict__ out)
{
    __shared__ float tile[64];
    tile[threadIdx.x] = 1.0f;
    __syncthreads();
    out[blockIdx.x * 32 + threadIdx.x] = tile[threadIdx.x + 32 * blockIdx.x];
}

__global__ void divergent_sync_kernel(float* __restrict__ out)
{
    if (threadIdx.x < 16) __syncthreads();
    out[threadIdx.x] = 1.0f;
}

__global__ void early_return_sync_kernel(float* __restrict__ out, int n)
{
    if ((int)threadIdx.x >= n) return;
    __syncthreads();
    out[threadIdx.x] = 1.0f;
}

__global__ void partial_warp_shuffle_kernel(float* __restrict__ out)
{
    out[threadIdx.x] = __shfl_xor_sync(0xffffffffu, (float)threadIdx.x, 1);
}

__global__ void out_of_bounds_kernel(float* __restrict__ out, int n)
{
    if (threadIdx.x == 0) out[n] = 42.0f;       // one past the end
}

__global__ void scale_kernel(float* __restrict__ y, const float* __restrict__ x, float a, int n)
{
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) y[i] = a * x[i];
}

// tiny * tiny underflows to a float denormal (1e-30 * 1e-9 = 1e-39), which -ftz=true flushes.
__global__ void denormal_kernel(float* __restrict__ out, float tiny)
{
    out[threadIdx.x] = threadIdx.x == 0 ? tiny * 1e-9f : tiny;
}
