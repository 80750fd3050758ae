// im2col / col2im on the GPU: a convolution as one matrix product.
//
// Column layout, the same as the CPU kernels (kernels/cpu/columns.py):
//
//     cols[(c*kh + i)*kw + j, (n*Ho + oh)*Wo + ow] = x[n, c, oh*sh - ph + i*dh, ow*sw - pw + j*dw]
//
// (zero where the input index falls in the padding).  cols is a C-contiguous
// (C*kh*kw, N*Ho*Wo) matrix, x a C-contiguous (N, C, H, W) tensor.
//
// Index arithmetic: flat indices and products of sizes are 64-bit (a (576,
// 128*32*32) float32 matrix already has 75M elements and a bigger batch or
// network passes 2^31); a single coordinate (ih, ow, ...) fits in 32 bits.
//
// Both kernels use a grid-stride loop: the Python side launches
// ceil(total / block) blocks, so every thread normally handles exactly one
// element and the loop runs once; the loop only keeps the kernel correct if
// the grid is ever capped below that.

typedef long long i64;

// ----------------------------------------------------------------- im2col
// Thread mapping: one thread per element of cols, e = row * ncol + col.
// Consecutive threads take consecutive columns (output positions), so the
// writes to cols are coalesced, and for stride 1 so are the reads of x.
template <typename T>
__global__ void im2col_kernel(const T* __restrict__ x, T* __restrict__ cols,
                              int n_img, int ch, int h, int w,
                              int kh, int kw, int sh, int sw, int ph, int pw, int dh, int dw,
                              int ho, int wo)
{
    const i64 ncol = (i64)n_img * ho * wo;
    const i64 total = (i64)ch * kh * kw * ncol;
    const i64 step = (i64)gridDim.x * blockDim.x;
    for (i64 e = (i64)blockIdx.x * blockDim.x + threadIdx.x; e < total; e += step) {
        const i64 row = e / ncol;               // (c, i, j): which channel and kernel tap
        const i64 col = e - row * ncol;         // (n, oh, ow): which output position
        const int j = (int)(row % kw);
        const int i = (int)((row / kw) % kh);
        const int c = (int)(row / ((i64)kw * kh));
        const int ow = (int)(col % wo);
        const int oh = (int)((col / wo) % ho);
        const int n = (int)(col / ((i64)wo * ho));
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
// the result does not depend on scheduling; the taps are added in the order
// (i, j) = (0, 0), (0, 1), ... -- the order the CPU kernel adds them in, so
// the two agree to the last bit.  Every pixel is written (zero when no tap
// reads it), which is what makes `out=` an overwrite.
//
// Tap (i, j) reads pixel (ih, iw) from output (oh, ow) iff
//     oh*sh = ih + ph - i*dh   (an exact multiple of sh, 0 <= oh < Ho)
// and the same for w.  ih + ph - i*dh falls as i grows: once it is negative
// no later tap can match, hence the `break`.
template <typename T>
__global__ void col2im_kernel(const T* __restrict__ cols, T* __restrict__ x,
                              int n_img, int ch, int h, int w,
                              int kh, int kw, int sh, int sw, int ph, int pw, int dh, int dw,
                              int ho, int wo)
{
    const i64 ncol = (i64)n_img * ho * wo;
    const i64 total = (i64)n_img * ch * h * w;
    const i64 step = (i64)gridDim.x * blockDim.x;
    for (i64 e = (i64)blockIdx.x * blockDim.x + threadIdx.x; e < total; e += step) {
        const int iw = (int)(e % w);
        const int ih = (int)((e / w) % h);
        const i64 nc = e / ((i64)w * h);         // n*C + c
        const int c = (int)(nc % ch);
        const int n = (int)(nc / ch);
        T acc = T(0);
        for (int i = 0; i < kh; ++i) {
            const int th = ih + ph - i * dh;     // = oh * sh when tap i reads row ih
            if (th < 0) break;
            if (th % sh != 0) continue;
            const int oh = th / sh;
            if (oh >= ho) continue;
            for (int j = 0; j < kw; ++j) {
                const int tw = iw + pw - j * dw;
                if (tw < 0) break;
                if (tw % sw != 0) continue;
                const int ow = tw / sw;
                if (ow >= wo) continue;
                const i64 row = ((i64)c * kh + i) * kw + j;
                acc += cols[row * ncol + ((i64)n * ho + oh) * wo + ow];
            }
        }
        x[e] = acc;
    }
}
