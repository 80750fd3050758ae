// Cross-entropy on logits (N, C) (C-contiguous) and class indices target (N,):
//
//   forward:   lse[i]  = log Σ_j exp(z[i, j])          (max-shifted: exp never overflows)
//              loss[i] = lse[i] - z[i, target[i]]      = -log softmax(z)[i, target[i]]
//   backward:  dz[i, j] = (exp(z[i, j] - lse[i]) - [j == target[i]]) * g[i*g_stride] * scale
//              = (softmax - onehot) * upstream gradient; for reduction 'mean' the
//              Python side passes the 0-d upstream gradient (g_stride 0) and scale 1/N.
//
// A target outside [0, C) makes that row's loss NaN (and its gradient row NaN)
// instead of raising: the CPU op checks the targets on the host, but on the GPU
// that check would copy them back and wait for the device every step.  A NaN
// in the loss is seen at the next logged value and never silently trains on.
//
// The only state kept between forward and backward is lse (N values), not the
// (N, C) log-probabilities.

typedef long long i64;

__device__ __forceinline__ float exp_(float v) { return expf(v); }
__device__ __forceinline__ double exp_(double v) { return exp(v); }
__device__ __forceinline__ float log_(float v) { return logf(v); }
__device__ __forceinline__ double log_(double v) { return log(v); }
__device__ __forceinline__ float quiet_nan(float) { return __int_as_float(0x7fc00000); }
__device__ __forceinline__ double quiet_nan(double) { return __longlong_as_double(0x7ff8000000000000LL); }

// Forward.  Thread mapping: one WARP per row (block = 4 warps = 4 rows; grid =
// ceil(N / 4)); the 32 lanes stride over the row's C logits and combine with
// warp shuffles.  All lanes of a warp share the row, so a warp past the last row
// leaves as a whole and the full-mask shuffles are safe.
template <typename T, typename I>
__global__ void cross_entropy_forward_kernel(const T* __restrict__ logits, const I* __restrict__ target,
                                             T* __restrict__ loss, T* __restrict__ lse_out, int n, int c)
{
    const int lane = threadIdx.x & 31;
    const i64 row = (i64)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    if (row >= n) return;
    const T* z = logits + row * c;

    T mx = z[0];
    for (int j = lane; j < c; j += 32) mx = z[j] > mx ? z[j] : mx;
    for (int offset = 16; offset > 0; offset >>= 1) {
        const T other = __shfl_xor_sync(0xffffffffu, mx, offset);
        mx = other > mx ? other : mx;
    }
    T sum = T(0);
    for (int j = lane; j < c; j += 32) sum += exp_(z[j] - mx);
    for (int offset = 16; offset > 0; offset >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, offset);

    if (lane == 0) {
        const T lse = mx + log_(sum);           // NaN logits make sum, and so lse and the loss, NaN
        const i64 t = (i64)target[row];
        lse_out[row] = lse;
        loss[row] = (t >= 0 && t < c) ? lse - z[t] : quiet_nan(T(0));
    }
}

// Backward.  Thread mapping: one thread per logit, e = i*C + j (grid-stride).
template <typename T, typename I>
__global__ void cross_entropy_backward_kernel(const T* __restrict__ logits, const I* __restrict__ target,
                                              const T* __restrict__ lse, const T* __restrict__ g, i64 g_stride,
                                              T scale, T* __restrict__ grad, int n, int c)
{
    const i64 total = (i64)n * c;
    const i64 step = (i64)gridDim.x * blockDim.x;
    for (i64 e = (i64)blockIdx.x * blockDim.x + threadIdx.x; e < total; e += step) {
        const i64 row = e / c;
        const i64 j = e - row * c;
        const i64 t = (i64)target[row];
        T v;
        if (t < 0 || t >= c) {
            v = quiet_nan(T(0));
        } else {
            v = exp_(logits[e] - lse[row]);
            if (j == t) v -= T(1);
            v *= g[row * g_stride] * scale;
        }
        grad[e] = v;
    }
}
