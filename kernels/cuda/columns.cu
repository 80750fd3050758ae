// im2col / col2im on the GPU: a convolution as one matrix product.
//
// Images are channels-last, x (N, H, W, C); the column layout is the CPU
// kernels' (kernels/cpu/columns.py): one row per output pixel, the taps of
// channel group g ordered (g, i, j, cg) with Cg = C / groups:
//
//     cols[(n*Ho + oh)*Wo + ow, ((g*kh + i)*kw + j)*Cg + cg] = x[n, oh*sh - ph + i*dh, ow*sw - pw + j*dw, g*Cg + cg]
//
// (zero where the input index falls in the padding).  cols is a C-contiguous
// (N*Ho*Wo, C*kh*kw) matrix, x a C-contiguous (N, H, W, C) tensor.
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
// Consecutive threads take consecutive taps of one output pixel: the writes
// are coalesced, and so are the reads (consecutive channels of one pixel).
template <typename T>
__global__ void im2col_kernel(const T* __restrict__ x, T* __restrict__ cols,
                              int n_img, int h, int w, int ch,
                              int kh, int kw, int sh, int sw, int ph, int pw, int dh, int dw,
                              int ho, int wo, int groups)
{
    const int cpg = ch / groups;                 // channels per group
    const i64 ntap = (i64)ch * kh * kw;
    const i64 total = (i64)n_img * ho * wo * ntap;
    const i64 step = (i64)gridDim.x * blockDim.x;
    for (i64 e = (i64)blockIdx.x * blockDim.x + threadIdx.x; e < total; e += step) {
        const i64 row = e / ntap;               // (n, oh, ow): which output position
        const int tap = (int)(e - row * ntap);  // (g, i, j, cg): which group, kernel tap, channel
        const int cg = tap % cpg;
        const int j = (tap / cpg) % kw;
        const int i = (tap / (cpg * kw)) % kh;
        const int g = tap / (cpg * kw * kh);
        const int ow = (int)(row % wo);
        const int oh = (int)((row / wo) % ho);
        const int n = (int)(row / ((i64)wo * ho));
        const int ih = oh * sh - ph + i * dh;
        const int iw = ow * sw - pw + j * dw;
        T v = T(0);
        if (ih >= 0 && ih < h && iw >= 0 && iw < w)
            v = x[(((i64)n * h + ih) * w + iw) * ch + g * cpg + cg];
        cols[e] = v;
    }
}

// ----------------------------------------------------------------- col2im
// The adjoint of im2col: x[n, ih, iw, c] = sum of every cols entry that
// im2col would have read from that element.
//
// Thread mapping: one thread per INPUT element, e = ((n*H + ih)*W + iw)*C + c,
// a gather: the thread finds the kernel taps (i, j) whose output position
// (oh, ow) reads its pixel and sums those entries, then writes the element
// once.  No two threads write the same address, so there are no atomics and
// the result does not depend on scheduling.  The taps are added with i and j
// both descending -- the order in which the CPU kernel's loops (output pixel by
// output pixel) reach them -- so the two agree to the last bit.  Every element
// is written (zero when no tap reads it): `out=` is an overwrite.
//
// Tap (i, j) reads pixel (ih, iw) from output (oh, ow) iff
//     oh*sh = ih + ph - i*dh   (an exact multiple of sh, 0 <= oh < Ho)
// and the same for w.
template <typename T>
__global__ void col2im_kernel(const T* __restrict__ cols, T* __restrict__ x,
                              int n_img, int h, int w, int ch,
                              int kh, int kw, int sh, int sw, int ph, int pw, int dh, int dw,
                              int ho, int wo, int groups)
{
    const int cpg = ch / groups;
    const i64 ntap = (i64)ch * kh * kw;
    const i64 total = (i64)n_img * h * w * ch;
    const i64 step = (i64)gridDim.x * blockDim.x;
    for (i64 e = (i64)blockIdx.x * blockDim.x + threadIdx.x; e < total; e += step) {
        const int c = (int)(e % ch);
        const int iw = (int)((e / ch) % w);
        const int ih = (int)((e / ((i64)ch * w)) % h);
        const int n = (int)(e / ((i64)ch * w * h));
        const int g = c / cpg, cg = c % cpg;
        T acc = T(0);
        for (int i = kh - 1; i >= 0; --i) {
            const int th = ih + ph - i * dh;     // = oh * sh when tap i reads row ih
            if (th < 0 || th % sh != 0) continue;
            const int oh = th / sh;
            if (oh >= ho) continue;
            for (int j = kw - 1; j >= 0; --j) {
                const int tw = iw + pw - j * dw;
                if (tw < 0 || tw % sw != 0) continue;
                const int ow = tw / sw;
                if (ow >= wo) continue;
                const i64 row = ((i64)n * ho + oh) * wo + ow;
                acc += cols[row * ntap + ((g * kh + i) * kw + j) * cpg + cg];
            }
        }
        x[e] = acc;
    }
}
