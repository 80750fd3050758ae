// im2col / col2im on the GPU: a convolution as one matrix product.
//
// Column layout, the same as the CPU kernels (kernels/cpu/columns.py), one row
// per output pixel:
//
//     cols[(n*Ho + oh)*Wo + ow, (c*kh + i)*kw + j] = x[n, c, oh*sh - ph + i*dh, ow*sw - pw + j*dw]
//
// (zero where the input index falls in the padding).  cols is a C-contiguous
// (N*Ho*Wo, C*kh*kw) matrix, x a C-contiguous (N, C, H, W) tensor.
//
// Index arithmetic: flat indices and products of sizes are 64-bit (a
// (128*32*32, 576) float32 matrix already has 75M elements and a bigger batch or
// network passes 2^31); a single coordinate (ih, ow, ...) fits in 32 bits.
//
// Both kernels use a grid-stride loop: the Python side launches
// ceil(total / block) blocks, so every thread normally handles exactly one
// element and the loop runs once; the loop only keeps the kernel correct if
// the grid is ever capped below that.

typedef long long i64;

// ----------------------------------------------------------------- im2col
// Thread mapping: one thread per element of cols, e = row * ntap + tap.
// Consecutive threads take consecutive taps of one output pixel, so the
// writes to cols are coalesced; the reads of x hit a few cache lines per warp.
template <typename T>
__global__ void im2col_kernel(const T* __restrict__ x, T* __restrict__ cols,
                              int n_img, int ch, int h, int w,
                              int kh, int kw, int sh, int sw, int ph, int pw, int dh, int dw,
                              int ho, int wo)
{
    const i64 ntap = (i64)ch * kh * kw;
    const i64 total = (i64)n_img * ho * wo * ntap;
    const i64 step = (i64)gridDim.x * blockDim.x;
    for (i64 e = (i64)blockIdx.x * blockDim.x + threadIdx.x; e < total; e += step) {
        const i64 row = e / ntap;               // (n, oh, ow): which output position
        const i64 tap = e - row * ntap;         // (c, i, j): which channel and kernel tap
        const int j = (int)(tap % kw);
        const int i = (int)((tap / kw) % kh);
        const int c = (int)(tap / ((i64)kw * kh));
        const int ow = (int)(row % wo);
        const int oh = (int)((row / wo) % ho);
        const int n = (int)(row / ((i64)wo * ho));
        const int ih = oh * sh - ph + i * dh;
        const int iw = ow * sw - pw + j * dw;
        T v = T(0);
        if (ih >= 0 && ih < h && iw >= 0 && iw < w)
            v = x[(((i64)n * ch + c) * h + ih) * w + iw];
        cols[e] = v;
    }
}

// ----------------------------------------------------------------- col2im
// The adjoint of im2col: x[n, c, ih, iw] = sum of every cols entry that
// im2col would have read from that pixel.
//
// Thread mapping: one thread per INPUT pixel, e = ((n*C + c)*H + ih)*W + iw,
// a gather: the thread finds the kernel taps (i, j) whose output position
// (oh, ow) reads its pixel and sums those entries, then writes the pixel
// once.  No two threads write the same address, so there are no atomics and
// the result does not depend on scheduling.  The taps are added with i
// descending and j ascending -- the order in which the CPU kernel's loops
// (output line by output line) reach them -- so the two agree to the last bit.
// Every pixel is written (zero when no tap reads it): `out=` is an overwrite.
//
// Tap (i, j) reads pixel (ih, iw) from output (oh, ow) iff
//     oh*sh = ih + ph - i*dh   (an exact multiple of sh, 0 <= oh < Ho)
// and the same for w.
template <typename T>
__global__ void col2im_kernel(const T* __restrict__ cols, T* __restrict__ x,
                              int n_img, int ch, int h, int w,
                              int kh, int kw, int sh, int sw, int ph, int pw, int dh, int dw,
                              int ho, int wo)
{
    const i64 ntap = (i64)ch * kh * kw;
    const i64 total = (i64)n_img * ch * h * w;
    const i64 step = (i64)gridDim.x * blockDim.x;
    for (i64 e = (i64)blockIdx.x * blockDim.x + threadIdx.x; e < total; e += step) {
        const int iw = (int)(e % w);
        const int ih = (int)((e / w) % h);
        const i64 nc = e / ((i64)w * h);         // n*C + c
        const int c = (int)(nc % ch);
        const int n = (int)(nc / ch);
        T acc = T(0);
        for (int i = kh - 1; i >= 0; --i) {
            const int th = ih + ph - i * dh;     // = oh * sh when tap i reads row ih
            if (th < 0 || th % sh != 0) continue;
            const int oh = th / sh;
            if (oh >= ho) continue;
            for (int j = 0; j < kw; ++j) {
                const int tw = iw + pw - j * dw;
                if (tw < 0) break;               // tw only falls as j grows
                if (tw % sw != 0) continue;
                const int ow = tw / sw;
                if (ow >= wo) continue;
                const i64 row = ((i64)n * ho + oh) * wo + ow;
                acc += cols[row * ntap + ((i64)c * kh + i) * kw + j];
            }
        }
        x[e] = acc;
    }
}
