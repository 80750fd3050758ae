// Max and average pooling over C-contiguous (N, C, H, W) tensors, the same
// definitions as kernels/cpu/pooling.py.  "plane" = one (image, channel) pair;
// planes = N*C.  Flat indices are 64-bit, coordinates 32-bit.
//
// Forward kernels: one thread per OUTPUT element.  Backward kernels: one thread
// per INPUT pixel, a gather over the output windows that contain the pixel, so
// every dx element is written exactly once (no atomics, no zero-fill pass,
// deterministic) and the contributions are added in the order (oh, ow)
// ascending, as the CPU kernels add them.
//
// Output windows containing input row ih: window oh covers rows
// [oh*sh - ph, oh*sh - ph + kh), so  (ih + ph - kh + 1)/sh <= oh <= (ih + ph)/sh
// (ceiling on the left, floor on the right), clipped to [0, Ho).  Same for w.

typedef long long i64;

#define MINIRES_POOL_MAGIC 0x4d52504f   // "MRPO": marks a geometry record behind argmax
constexpr int POOL_GEOMETRY_INTS = 8;   // the record's length (pooling.py: POOL_GEOMETRY_INTS)

__device__ __forceinline__ int first_window(int i, int pad, int k, int s)
{
    const int t = i + pad - k + 1;            // first oh with oh*s >= t
    return t <= 0 ? 0 : (t + s - 1) / s;
}

__device__ __forceinline__ int last_window(int i, int pad, int s, int out)
{
    const int t = (i + pad) / s;              // i + pad >= 0 always
    return t < out - 1 ? t : out - 1;
}

// ------------------------------------------------------------------- max
// argmax: int32 flat index (ih*W + iw) of the first maximum inside each input
// plane.  The first thread also writes the pooling geometry into `geom`
// (8 ints right behind argmax in the same allocation, see pooling.py):
// [magic, kh, kw, sh, sw, ph, pw, 0].  The backward kernel reads it from there,
// because max_pool2d_backward(g, argmax, x_shape) is not given the geometry and
// a gather needs it to know which windows cover a pixel.
template <typename T>
__global__ void max_pool_forward_kernel(const T* __restrict__ x, T* __restrict__ out, int* __restrict__ argmax,
                                        int* __restrict__ geom, i64 planes, int h, int w, int ho, int wo,
                                        int kh, int kw, int sh, int sw, int ph, int pw)
{
    const i64 total = planes * ho * wo;
    const i64 step = (i64)gridDim.x * blockDim.x;
    const i64 first = (i64)blockIdx.x * blockDim.x + threadIdx.x;
    if (first == 0) {
        geom[0] = MINIRES_POOL_MAGIC;
        geom[1] = kh; geom[2] = kw; geom[3] = sh; geom[4] = sw; geom[5] = ph; geom[6] = pw;
        geom[POOL_GEOMETRY_INTS - 1] = 0;
    }
    for (i64 e = first; e < total; e += step) {
        const int ow = (int)(e % wo);
        const int oh = (int)((e / wo) % ho);
        const T* plane = x + (e / ((i64)wo * ho)) * h * w;
        T best = T(0);
        int where = -1;
        for (int i = 0; i < kh; ++i) {
            const int ih = oh * sh - ph + i;
            if (ih < 0 || ih >= h) continue;
            for (int j = 0; j < kw; ++j) {
                const int iw = ow * sw - pw + j;
                if (iw < 0 || iw >= w) continue;
                const T v = plane[ih * w + iw];
                if (where < 0 || v > best) {     // first maximum wins (NaN-free input, as on the CPU)
                    best = v;
                    where = ih * w + iw;
                }
            }
        }
        out[e] = best;
        argmax[e] = where;
    }
}

// One thread per input pixel: dx = Σ g over the windows whose argmax is this
// pixel.  geom: the record written by the forward kernel, or null.  Without a
// valid record (an argmax that did not come from max_pool_forward_kernel) the
// thread scans every output of its plane -- correct, only slower.
template <typename T>
__global__ void max_pool_backward_kernel(const T* __restrict__ g, const int* __restrict__ argmax,
                                         const int* __restrict__ geom, T* __restrict__ dx,
                                         i64 planes, int h, int w, int ho, int wo)
{
    int kh = h, kw = w, sh = 1, sw = 1, ph = 0, pw = 0;
    const bool known = geom != nullptr && geom[0] == MINIRES_POOL_MAGIC;
    if (known) { kh = geom[1]; kw = geom[2]; sh = geom[3]; sw = geom[4]; ph = geom[5]; pw = geom[6]; }
    const i64 total = planes * h * w;
    const i64 step = (i64)gridDim.x * blockDim.x;
    for (i64 e = (i64)blockIdx.x * blockDim.x + threadIdx.x; e < total; e += step) {
        const int iw = (int)(e % w);
        const int ih = (int)((e / w) % h);
        const i64 p = e / ((i64)w * h);
        const int target = ih * w + iw;
        int oh0 = 0, oh1 = ho - 1, ow0 = 0, ow1 = wo - 1;
        if (known) {
            oh0 = first_window(ih, ph, kh, sh);
            oh1 = last_window(ih, ph, sh, ho);
            ow0 = first_window(iw, pw, kw, sw);
            ow1 = last_window(iw, pw, sw, wo);
        }
        const i64 base = p * ho * wo;
        T acc = T(0);
        for (int oh = oh0; oh <= oh1; ++oh)
            for (int ow = ow0; ow <= ow1; ++ow) {
                const i64 q = base + (i64)oh * wo + ow;
                if (argmax[q] == target) acc += g[q];
            }
        dx[e] = acc;
    }
}

// ---------------------------------------------------------------- average
// Window of output o along one axis, clipped to the input: [lo, hi); `span` is
// the window clipped to the PADDED input -- PyTorch's divisor with
// count_include_pad (kernels/cpu/pooling.py: _window).
struct Window {
    int lo, hi, span;
};

__device__ __forceinline__ Window window(int o, int s, int p, int k, int size)
{
    const int start = o * s - p;
    const int stop = start + k;
    Window win;
    win.lo = start > 0 ? start : 0;
    win.hi = stop < size ? stop : size;
    win.span = (stop < size + p ? stop : size + p) - start;
    return win;
}

template <typename T>
__global__ void avg_pool_forward_kernel(const T* __restrict__ x, T* __restrict__ out, i64 planes,
                                        int h, int w, int ho, int wo, int kh, int kw, int sh, int sw,
                                        int ph, int pw, int include_pad)
{
    const i64 total = planes * ho * wo;
    const i64 step = (i64)gridDim.x * blockDim.x;
    for (i64 e = (i64)blockIdx.x * blockDim.x + threadIdx.x; e < total; e += step) {
        const int ow = (int)(e % wo);
        const int oh = (int)((e / wo) % ho);
        const T* plane = x + (e / ((i64)wo * ho)) * h * w;
        const Window wh = window(oh, sh, ph, kh, h);
        const Window ww = window(ow, sw, pw, kw, w);
        T total_v = T(0);
        for (int ih = wh.lo; ih < wh.hi; ++ih)
            for (int iw = ww.lo; iw < ww.hi; ++iw)
                total_v += plane[ih * w + iw];
        const int div = include_pad ? wh.span * ww.span : (wh.hi - wh.lo) * (ww.hi - ww.lo);
        out[e] = total_v / (T)div;
    }
}

// One thread per input pixel: dx = Σ g[o] / divisor(o) over the windows o that
// contain the pixel (a window contains it iff its clipped range does).
template <typename T>
__global__ void avg_pool_backward_kernel(const T* __restrict__ g, T* __restrict__ dx, i64 planes,
                                         int h, int w, int ho, int wo, int kh, int kw, int sh, int sw,
                                         int ph, int pw, int include_pad)
{
    const i64 total = planes * h * w;
    const i64 step = (i64)gridDim.x * blockDim.x;
    for (i64 e = (i64)blockIdx.x * blockDim.x + threadIdx.x; e < total; e += step) {
        const int iw = (int)(e % w);
        const int ih = (int)((e / w) % h);
        const i64 base = (e / ((i64)w * h)) * ho * wo;
        const int oh1 = last_window(ih, ph, sh, ho), ow1 = last_window(iw, pw, sw, wo);
        T acc = T(0);
        for (int oh = first_window(ih, ph, kh, sh); oh <= oh1; ++oh) {
            const Window wh = window(oh, sh, ph, kh, h);
            for (int ow = first_window(iw, pw, kw, sw); ow <= ow1; ++ow) {
                const Window ww = window(ow, sw, pw, kw, w);
                const int div = include_pad ? wh.span * ww.span : (wh.hi - wh.lo) * (ww.hi - ww.lo);
                acc += g[base + (i64)oh * wo + ow] / (T)div;
            }
        }
        dx[e] = acc;
    }
}
