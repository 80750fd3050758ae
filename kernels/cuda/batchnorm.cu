// Batch normalisation, training mode, over x viewed as (N, C, L) (C-contiguous).
//
// Forward, two kernels:
//   bn_forward_stats_kernel  one block per channel: mean and biased variance in
//                            ONE pass over the channel's N*L values, float64
//   bn_forward_apply_kernel  y = (x - mean)*scale + beta (scale = gamma*invstd),
//                            optionally ReLU'd
// Backward (x^ = (x - mean)*invstd, M = N*L), two kernels:
//   bn_backward_reduce_kernel  one block per channel: Σg and Σg·(x - mean) in
//                              one pass -> dbeta = Σg, dgamma = invstd·Σg(x-mean)
//   bn_backward_apply_kernel   dx = gamma·invstd·(g - Σg/M - x^·dgamma/M)
// With RELU = true the kernels are the fused BN+ReLU: forward clamps y at 0,
// backward first masks g with (y > 0) -- ReLU's own backward, read from the
// saved output -- and then is plain BN backward of the masked gradient.
//
// Why a one-pass variance is safe here.  The stats kernel accumulates SHIFTED
// sums in double:  d = x - K,  S1 = Σd,  S2 = Σd²,  var = S2/M - (S1/M)²,  with
// K = the channel's first value.  The textbook one-pass formula
// E[x²] - E[x]² loses about log10(mean²/var) digits to cancellation; shifting
// by K changes that to log10((mean-K)²/var), and K, being one of the channel's
// own samples, lies within a few standard deviations of the mean, so at most
// a digit or two of the 16 a double carries are lost -- far below float32's 7
// and below the 1e-10 float64 agreement the tests ask for.  (It is the
// "shifted data" algorithm; Welford's update would also do, at the price of a
// division per element.)  Each thread sums ~M/512 values sequentially, then a
// tree over threads: rounding error grows like M/512 ulps, ~1e-13 relative for
// a ResNet channel of 131072 values.  A tiny negative variance from rounding
// is clamped to 0.
//
// The elementwise passes also compute in double, from x - mean (not from
// x*scale + shift: for a channel whose mean is large against its spread, that
// form cancels in float32), as the CPU kernels do.  That is 3-5 float64
// operations per element: free on datacenter GPUs and still under the memory
// time on consumer GPUs' slow float64 units.
//
// Thread mapping.  A channel's values sit at (n*C + c)*L + k for n < N, k < L:
// N runs of L contiguous values.  Threads walk the flat position m = n*L + k
// with a stride; `ChannelWalk` keeps (n, k) and advances them without a
// division per element (a 64-bit division costs tens of instructions).  In the
// stats/reduce kernels a block of threads covers one channel (grid = C); in the
// apply kernels grid = (blocks per channel, C).  Block sizes are multiples of 32
// (block_sum2 relies on it) -- the Python side launches 512 / 256.
//
// No headers are included (NVRTC has no system headers); sqrt is a CUDA builtin.

typedef long long i64;

// Position of one thread in one channel, advanced by a fixed stride.
struct ChannelWalk {
    i64 n, k;          // image, offset inside the image's run of L values
    i64 dn, dk;        // the stride, split the same way
    i64 length;        // L
    __device__ ChannelWalk(i64 start, i64 stride, i64 len)
        : n(start / len), k(start % len), dn(stride / len), dk(stride % len), length(len) {}
    __device__ void next()
    {
        n += dn;
        k += dk;
        if (k >= length) { k -= length; ++n; }
    }
    __device__ i64 index(int c, int ch) const { return (n * ch + c) * length + k; }
};

__device__ __forceinline__ double warp_sum(double v)
{
    for (int offset = 16; offset > 0; offset >>= 1)
        v += __shfl_down_sync(0xffffffffu, v, offset);
    return v;                               // the warp's total, in lane 0
}

// Sums a and b over the block; thread 0 gets the totals.  blockDim.x must be a
// multiple of 32; the caller syncs before calling again (shared scratch).
__device__ __forceinline__ void block_sum2(double& a, double& b)
{
    __shared__ double part_a[32], part_b[32];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    a = warp_sum(a);
    b = warp_sum(b);
    if (lane == 0) { part_a[warp] = a; part_b[warp] = b; }
    __syncthreads();
    if (warp == 0) {
        const int warps = blockDim.x >> 5;
        a = lane < warps ? part_a[lane] : 0.0;
        b = lane < warps ? part_b[lane] : 0.0;
        a = warp_sum(a);
        b = warp_sum(b);
    }
}

// ------------------------------------------------------------------ forward
// grid = (C,), one block per channel.  Writes mean, var (biased), invstd: float64 (C,).
template <typename T>
__global__ void bn_forward_stats_kernel(const T* __restrict__ x, int n_img, int ch, i64 length, double eps,
                                        double* __restrict__ mean, double* __restrict__ var,
                                        double* __restrict__ invstd)
{
    const double count = (double)n_img * (double)length;
    for (int c = blockIdx.x; c < ch; c += gridDim.x) {
        const double shift = (double)x[(i64)c * length];         // K: the value at n = 0, k = 0
        double s1 = 0.0, s2 = 0.0;
        for (ChannelWalk it(threadIdx.x, blockDim.x, length); it.n < n_img; it.next()) {
            const double d = (double)x[it.index(c, ch)] - shift;
            s1 += d;
            s2 += d * d;
        }
        block_sum2(s1, s2);
        if (threadIdx.x == 0) {
            const double dm = s1 / count;
            double v = s2 / count - dm * dm;
            v = v > 0.0 ? v : 0.0;
            mean[c] = shift + dm;
            var[c] = v;
            invstd[c] = 1.0 / sqrt(v + eps);
        }
        __syncthreads();
    }
}

// 1-d grid over channels.  In place: running = (1 - momentum) running + momentum batch, the
// batch variance made unbiased by ``unbias`` = M/(M-1): five elementwise launches as one.
template <typename T>
__global__ void bn_update_running_kernel(T* __restrict__ running_mean, T* __restrict__ running_var,
                                         const double* __restrict__ mean, const double* __restrict__ var,
                                         int ch, double momentum, double unbias)
{
    for (int c = blockIdx.x * blockDim.x + threadIdx.x; c < ch; c += gridDim.x * blockDim.x) {
        running_mean[c] = (T)((1.0 - momentum) * (double)running_mean[c] + momentum * mean[c]);
        running_var[c] = (T)((1.0 - momentum) * (double)running_var[c] + momentum * unbias * var[c]);
    }
}

// grid = (ceil(N*L / (block*items)), C).  y = (x - mean)*gamma*invstd + beta [then max(y, 0)].
template <typename T, bool RELU>
__global__ void bn_forward_apply_kernel(const T* __restrict__ x, T* __restrict__ y,
                                        const double* __restrict__ mean, const double* __restrict__ invstd,
                                        const T* __restrict__ gamma, const T* __restrict__ beta,
                                        int n_img, int ch, i64 length)
{
    for (int c = blockIdx.y; c < ch; c += gridDim.y) {
        const double m = mean[c];
        const double scale = (double)gamma[c] * invstd[c];
        const double b = (double)beta[c];
        for (ChannelWalk it((i64)blockIdx.x * blockDim.x + threadIdx.x, (i64)gridDim.x * blockDim.x, length);
             it.n < n_img; it.next()) {
            const i64 idx = it.index(c, ch);
            T v = (T)(((double)x[idx] - m) * scale + b);
            if (RELU) v = v < T(0) ? T(0) : v;      // like maximum(v, 0): NaN stays NaN
            y[idx] = v;
        }
    }
}

// ----------------------------------------------------------------- backward
// grid = (C,), one block per channel.  y (the forward output) is read only when
// RELU.  Writes dgamma, dbeta (T) and coef (float64, 3*C) = per channel
// [scale = gamma*invstd | a = Σg/M | b = Σg(x-mean)·invstd²/M] for the apply kernel.
template <typename T, bool RELU>
__global__ void bn_backward_reduce_kernel(const T* __restrict__ g, const T* __restrict__ x,
                                          const T* __restrict__ y,
                                          const double* __restrict__ mean, const double* __restrict__ invstd,
                                          const T* __restrict__ gamma, int n_img, int ch, i64 length,
                                          T* __restrict__ dgamma, T* __restrict__ dbeta,
                                          double* __restrict__ coef)
{
    const double count = (double)n_img * (double)length;
    for (int c = blockIdx.x; c < ch; c += gridDim.x) {
        const double m = mean[c];
        double sum_g = 0.0, sum_gx = 0.0;
        for (ChannelWalk it(threadIdx.x, blockDim.x, length); it.n < n_img; it.next()) {
            const i64 idx = it.index(c, ch);
            double gv = (double)g[idx];
            if (RELU && !(y[idx] > T(0))) gv = 0.0;
            sum_g += gv;
            sum_gx += gv * ((double)x[idx] - m);
        }
        block_sum2(sum_g, sum_gx);
        if (threadIdx.x == 0) {
            const double inv = invstd[c];
            dbeta[c] = (T)sum_g;
            dgamma[c] = (T)(sum_gx * inv);
            coef[c] = (double)gamma[c] * inv;
            coef[ch + c] = sum_g / count;
            coef[2 * ch + c] = sum_gx * inv * inv / count;
        }
        __syncthreads();
    }
}

// grid = (ceil(N*L / (block*items)), C).  dx = scale * (g' - a - (x - mean) * b), g' = g [masked].
template <typename T, bool RELU>
__global__ void bn_backward_apply_kernel(const T* __restrict__ g, const T* __restrict__ x,
                                         const T* __restrict__ y, const double* __restrict__ mean,
                                         const double* __restrict__ coef, int n_img, int ch, i64 length,
                                         T* __restrict__ dx)
{
    for (int c = blockIdx.y; c < ch; c += gridDim.y) {
        const double m = mean[c], scale = coef[c], a = coef[ch + c], b = coef[2 * ch + c];
        for (ChannelWalk it((i64)blockIdx.x * blockDim.x + threadIdx.x, (i64)gridDim.x * blockDim.x, length);
             it.n < n_img; it.next()) {
            const i64 idx = it.index(c, ch);
            double gv = (double)g[idx];
            if (RELU && !(y[idx] > T(0))) gv = 0.0;
            dx[idx] = (T)(scale * (gv - a - ((double)x[idx] - m) * b));
        }
    }
}
