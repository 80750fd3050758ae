// minires's own matrix multiply: C = op(A) @ op(B)  (or C += ..., see `accumulate`)
//
// minires uses it where cuBLAS cannot be used: CuPy refuses to call cuBLAS while
// a CUDA graph is being captured on a stream, so a captured training step does
// its convolutions' products here (kernels/cuda/__init__.py: GEMM = 'own').  It
// is written to be read, but also to be fast by construction: register tiles,
// double-buffered shared memory, vector loads, and split-K for the long thin
// products of the weight gradients.
//
// Shapes (row-major, C-contiguous, like NumPy):
//   op(A) is M x K:  A is stored M x K, or K x M when TRANS_A (then op(A) = A^T)
//   op(B) is K x N:  B is stored K x N, or N x K when TRANS_B
//   C     is M x N
// A batch of `batch` such products is one launch: matrix z of A starts at
// A + z*stride_a (stride 0 = the same matrix for every z, i.e. broadcasting).
//
// ---------------------------------------------------------------------------
// 1. Why tiles.  The naive kernel -- one thread per C element, a loop over K
//    reading a row of A and a column of B from global memory -- reads every
//    A element N times and every B element M times.  Memory, not arithmetic,
//    limits it.
//
// 2. Block tile BM x BN x BK = 128 x BN x 8, BN = 16, 32 or 64 (a template
//    parameter; gemm.py picks the smallest that covers N, because conv2d's
//    forward products have N = Cout = 16, 32 or 64 and a 64-wide tile would
//    compute 75% padding for N = 16).  One thread BLOCK (128 threads) computes
//    one BM x BN tile of C.  It walks K in steps of BK: each step the block
//    copies a BM x BK tile of op(A) and a BK x BN tile of op(B) into shared
//    memory, then every thread does its multiply-adds from shared memory.
//    Each global element is read once per tile instead of once per use.
//
// 3. Thread tile TM x TN = 8 x BN/8, in registers.  The 128 threads form a
//    THREADS_Y x THREADS_X = 16 x 8 grid.  Thread (tx, ty) owns rows in 2
//    groups of 4 consecutive ones, 4 ty + {0..3} and 64 + 4 ty + {0..3}, and
//    columns in groups of GN = min(TN, 4): GN tx + {0..GN-1} (+ 32 for the
//    second group at BN = 64).  A group is one vector load from shared memory
//    (LDS.128: 4 floats); the 4 rows of threads in a warp read 4 different
//    A groups (broadcast to the 8 threads of a row) and the 8 columns read 8
//    consecutive B groups (no bank conflicts).  Per k a thread loads TM values
//    of A and TN of B into registers and does TM*TN FMAs: 2 + 2 loads for 64
//    FMAs at BN = 64, 2 + 1 for 16 at BN = 16 (a 1-element-per-thread kernel
//    needs 2 loads per FMA; an SM issues about 4 warp FMA instructions per
//    warp shared load it can serve, so fewer than 4 FMAs per load would leave
//    the FMA units waiting on shared memory).
//
// 4. Double buffering: two copies of each shared tile.  The timeline of one
//    block, with one __syncthreads() per K step:
//
//        prologue:  global tile 0 -> registers -> smem[0];  sync
//        step t:    issue global loads of tile t+1 into registers  (in flight...)
//                   compute on smem[t % 2]                         (...hidden here)
//                   registers -> smem[(t+1) % 2];  sync
//
//    The loads of tile t+1 are issued before the math on tile t, so their
//    latency hides behind it.  One barrier per step suffices: step t writes
//    the buffer that step t-1 read, and every thread finished step t-1's reads
//    before the barrier that ended step t-1; the barrier ending step t makes
//    the new buffer complete before step t+1 reads it.
//
// 5. Vector loads.  A tile is copied in chunks of V consecutive elements along
//    the operand's contiguous axis (V = 4 floats or 2 doubles: 16 bytes, one
//    LDG.128), when the operand's base is 16-byte aligned and its row length
//    a multiple of V (then every chunk is aligned) and the chunk lies inside
//    the matrix.  Otherwise -- conv2d's first layer has K = 27 -- the chunk is
//    read element by element, with a 0 for each element outside the matrix
//    (adding 0*x changes nothing): the ragged edges run the same code.  Both
//    layouts of an operand land in one shared layout, As[k][m] and Bs[k][n]
//    ("k-major", so the compute loop reads TM values of one k row); PAD = 4
//    keeps the column-order writes (consecutive k) of the k-contiguous
//    operands off a single bank: rows of 132 words start 4 banks apart.
//
// 6. Split-K.  conv2d's weight gradient dW (Cout x kh*kw*Cin) sums over all
//    N*Ho*Wo output pixels: M*N is small (16 x 144) and K huge (131072), so
//    the plain grid would be one or two blocks.  Then gemm.py launches
//    `splits` blocks per tile, each summing a K range of k_per_split, into a
//    workspace of partial products (splits, batch, M, N), and
//    gemm_splitk_reduce_kernel adds them up, in a fixed order (deterministic),
//    into C.  When M < N, gemm.py computes the transposed product C^T =
//    op(B)^T op(A)^T instead (the narrow side then fits a narrow tile) and the
//    reduction writes it transposed.
//
// 7. TF32 tensor cores (float only, opt-in: kernels.cuda.GEMM_TF32).  The
//    same tiles, loads and timeline; only the math of a K step changes
//    (Tf32Math instead of FmaMath).  The 4 warps of a block each own 32 rows
//    of the 128 x BN tile: 2 x BN/8 tiles of 16 x 8, each one PTX instruction
//    mma.sync.m16n8k8.tf32 per K step (a warp-wide 16x8x8 product, fp32
//    accumulate, fragments in registers at the lane positions the PTX ISA
//    fixes; see Tf32Math).  The tiles are rounded to TF32 (10-bit mantissa,
//    cvt.rna: to nearest, ties away from zero) as they are stored to shared
//    memory, so each element is rounded once.  Products of TF32 numbers are
//    exact in fp32; the error is that of rounding the inputs, about 2^-11
//    relative per operand, not K * 2^-24.  Inline PTX, not nvcuda::wmma: the
//    sources include no header (NVRTC compiles them as they are), and the
//    PTX fragment layout is documented, so the CUDA emulator can model it
//    lane by lane (a wrong fragment index shows as a wrong result there).
//    PAD = 8 for this path: the fragment reads (lane = 4 g + t reads row t,
//    column g) then hit 32 different banks.
//
// Index arithmetic: element offsets are 64-bit (row * ld can pass 2^31); M, N
// and K themselves are checked to fit in int by the Python side.
// ---------------------------------------------------------------------------

typedef long long i64;

constexpr int BM = 128;                       // rows of C per block
constexpr int BK = 8;                         // depth of one K step
constexpr int TM = 8;                         // rows of C per thread (registers; FmaMath)
constexpr int THREADS_X = 8;                  // threads across a tile's columns (TN = BN / THREADS_X)
constexpr int THREADS_Y = BM / TM;            // 16 threads down its rows
constexpr int THREADS = THREADS_X * THREADS_Y;   // 128 threads per block
constexpr int REDUCE_THREADS = 256;           // block of gemm_splitk_reduce_kernel

template <bool C, typename A, typename B> struct Pick { typedef A type; };   // std::conditional, headerless
template <typename A, typename B> struct Pick<false, A, B> { typedef B type; };

template <typename T, int V> struct alignas(sizeof(T) * V) Vec { T v[V]; };   // one LDG of V elements

// ------------------------------------------------------------------ PTX helpers
// The CUDA emulator (tests/cuda_emulator/cuda_emu.h, which defines CUDA_EMU)
// models these instructions; nvcc's host pass sees bodies it never calls.
__device__ __forceinline__ unsigned cvt_rna_tf32(float x)       // float -> TF32 bits (low 13 bits 0)
{
#if defined(CUDA_EMU)
    return ::emu::cvt_rna_tf32_f32(x);
#elif defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    unsigned r;
    asm("cvt.rna.tf32.f32 %0, %1;" : "=r"(r) : "f"(x));
    return r;
#else
    return __float_as_uint(x);
#endif
}

// d += A (16 x 8) @ B (8 x 8), one warp together; a[4], b[2], d[4] at the PTX ISA's lane positions (Tf32Math)
__device__ __forceinline__ void mma_tf32_16x8x8(float (&d)[4], const unsigned (&a)[4], const unsigned (&b)[2])
{
#if defined(CUDA_EMU)
    ::emu::mma_m16n8k8_tf32(d, a, b, __LINE__);
#elif defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    asm volatile("mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                 "{%0,%1,%2,%3};"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
#elif defined(__CUDA_ARCH__)
    __trap();                                 // no tensor-core TF32 before sm_80 (gemm.py checks first)
#endif
}

// ---------------------------------------------------------- the math of a K step
// FP32/FP64 on the CUDA cores: thread (tx, ty) owns the groups of rows and columns of 3.
template <typename T, int BN>
struct FmaMath {
    static constexpr int PAD = 4;             // see 5.; a multiple of 4 keeps the groups 16-byte aligned
    static constexpr int TN = BN / THREADS_X;
    static constexpr int GM = 4, GN = TN < 4 ? TN : 4;         // rows / columns per group (one vector load)
    static constexpr int HM = TM / GM, HN = TN / GN;           // groups per thread
    static_assert(TN * THREADS_X == BN && HM * GM == TM && HN * GN == TN, "the thread tile splits into groups");
    T acc[TM][TN];

    // tile row of the thread's i-th row, tile column of its j-th column
    __device__ __forceinline__ static int row(int i)
    {
        return (i / GM) * (BM / HM) + (threadIdx.x / THREADS_X) * GM + i % GM;
    }
    __device__ __forceinline__ static int col(int j)
    {
        return (j / GN) * (BN / HN) + (threadIdx.x % THREADS_X) * GN + j % GN;
    }

    __device__ __forceinline__ static T to_smem(T v) { return v; }

    __device__ __forceinline__ void zero()
    {
#pragma unroll
        for (int i = 0; i < TM; ++i)
#pragma unroll
            for (int j = 0; j < TN; ++j)
                acc[i][j] = T(0);
    }

    // BK rank-1 updates of the thread's TM x TN registers
    __device__ __forceinline__ void step(const T (*As)[BM + PAD], const T (*Bs)[BN + PAD])
    {
#pragma unroll
        for (int k = 0; k < BK; ++k) {
            T a_frag[TM], b_frag[TN];
#pragma unroll
            for (int h = 0; h < HM; ++h) {
                const Vec<T, GM> v = *reinterpret_cast<const Vec<T, GM>*>(&As[k][row(h * GM)]);
#pragma unroll
                for (int r = 0; r < GM; ++r) a_frag[h * GM + r] = v.v[r];
            }
#pragma unroll
            for (int h = 0; h < HN; ++h) {
                const Vec<T, GN> v = *reinterpret_cast<const Vec<T, GN>*>(&Bs[k][col(h * GN)]);
#pragma unroll
                for (int c = 0; c < GN; ++c) b_frag[h * GN + c] = v.v[c];
            }
#pragma unroll
            for (int i = 0; i < TM; ++i)
#pragma unroll
                for (int j = 0; j < TN; ++j)
                    acc[i][j] += a_frag[i] * b_frag[j];
        }
    }

    // the thread's results to C (block tile at m0, n0), skipping those outside C
    __device__ __forceinline__ void store(T* __restrict__ c, int M, int N, int m0, int n0, int accumulate) const
    {
#pragma unroll
        for (int i = 0; i < TM; ++i) {
            const int gm = m0 + row(i);
            if (gm >= M) continue;
#pragma unroll
            for (int j = 0; j < TN; ++j) {
                const int gn = n0 + col(j);
                if (gn >= N) continue;
                const i64 at = (i64)gm * N + gn;
                c[at] = accumulate ? c[at] + acc[i][j] : acc[i][j];
            }
        }
    }
};

// TF32 tensor cores (see 7.).  Warp w owns tile rows 32 w .. 32 w + 31: MI x NI tiles of
// 16 x 8.  Lane = 4 g + t (g = 0..7, t = 0..3) holds, per the PTX ISA's mma.m16n8k8 .tf32:
//   a[0..3] = A(g, t), A(g + 8, t), A(g, t + 4), A(g + 8, t + 4)       (16 x 8 tile of op(A))
//   b[0..1] = B(t, g), B(t + 4, g)                                      (8 x 8 tile of op(B))
//   d[0..3] = D(g, 2t), D(g, 2t + 1), D(g + 8, 2t), D(g + 8, 2t + 1)    (16 x 8 tile of C)
template <int BN>
struct Tf32Math {
    static constexpr int PAD = 8;             // see 7.
    static constexpr int WARPS = THREADS / 32;
    static constexpr int WARP_ROWS = BM / WARPS;                 // 32
    static constexpr int MI = WARP_ROWS / 16, NI = BN / 8;
    static_assert(BK == 8 && MI * 16 * WARPS == BM && NI * 8 == BN, "the tile splits into 16 x 8 x 8 MMAs");
    float acc[MI][NI][4];

    __device__ __forceinline__ static float to_smem(float v) { return __uint_as_float(cvt_rna_tf32(v)); }

    __device__ __forceinline__ void zero()
    {
#pragma unroll
        for (int i = 0; i < MI; ++i)
#pragma unroll
            for (int j = 0; j < NI; ++j)
#pragma unroll
                for (int q = 0; q < 4; ++q)
                    acc[i][j][q] = 0.0f;
    }

    __device__ __forceinline__ void step(const float (*As)[BM + PAD], const float (*Bs)[BN + PAD])
    {
        const int lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
        const int r0 = (threadIdx.x / 32) * WARP_ROWS;
        unsigned a[MI][4], b[NI][2];
#pragma unroll
        for (int i = 0; i < MI; ++i) {        // As[k][m]: op(A)(m, k)
            const int m = r0 + 16 * i + g;
            a[i][0] = __float_as_uint(As[t][m]);
            a[i][1] = __float_as_uint(As[t][m + 8]);
            a[i][2] = __float_as_uint(As[t + 4][m]);
            a[i][3] = __float_as_uint(As[t + 4][m + 8]);
        }
#pragma unroll
        for (int j = 0; j < NI; ++j) {        // Bs[k][n]: op(B)(k, n)
            b[j][0] = __float_as_uint(Bs[t][8 * j + g]);
            b[j][1] = __float_as_uint(Bs[t + 4][8 * j + g]);
        }
#pragma unroll
        for (int i = 0; i < MI; ++i)
#pragma unroll
            for (int j = 0; j < NI; ++j)
                mma_tf32_16x8x8(acc[i][j], a[i], b[j]);
    }

    __device__ __forceinline__ void store(float* __restrict__ c, int M, int N, int m0, int n0, int accumulate) const
    {
        const int lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
        const int r0 = m0 + (threadIdx.x / 32) * WARP_ROWS;
#pragma unroll
        for (int i = 0; i < MI; ++i)
#pragma unroll
            for (int j = 0; j < NI; ++j)
#pragma unroll
                for (int q = 0; q < 4; ++q) {
                    const int gm = r0 + 16 * i + g + 8 * (q >> 1), gn = n0 + 8 * j + 2 * t + (q & 1);
                    if (gm >= M || gn >= N) continue;
                    const i64 at = (i64)gm * N + gn;
                    c[at] = accumulate ? c[at] + acc[i][j][q] : acc[i][j][q];
                }
    }
};

// ------------------------------------------------------- global -> shared copies
// One operand's share of one tile, held in registers between the global load and
// the shared store.  The tile is ROWS x COLS of a row-major matrix with row length
// ld, COLS along the contiguous axis; each thread holds CHUNKS chunks of V elements.
// K_CONTIGUOUS: the contiguous axis is k (A stored M x K, B stored N x K), so the
// shared layout [k][m or n] is the transpose of the tile.
template <typename T, int ROWS, int COLS, bool K_CONTIGUOUS>
struct TileCopy {
    static constexpr int VW = 16 / (int)sizeof(T);
    static constexpr int PER_THREAD = ROWS * COLS / THREADS;
    static constexpr int V = PER_THREAD < VW ? PER_THREAD : VW;
    static constexpr int CHUNKS = PER_THREAD / V;
    static constexpr int CHUNKS_PER_ROW = COLS / V;
    static_assert(PER_THREAD * THREADS == ROWS * COLS && CHUNKS * V == PER_THREAD && COLS % V == 0,
                  "the tile splits evenly into the threads' chunks");
    T reg[CHUNKS][V];

    // Rows r0.. of rows_n, columns c0.. of cols_n (cols_n <= ld: a split ends before the row does).
    __device__ __forceinline__ void load(const T* __restrict__ g, i64 ld, int r0, int rows_n, int c0, int cols_n,
                                         bool vec)
    {
#pragma unroll
        for (int i = 0; i < CHUNKS; ++i) {
            const int c = threadIdx.x + i * THREADS;
            const int gr = r0 + c / CHUNKS_PER_ROW;
            const int gc = c0 + (c % CHUNKS_PER_ROW) * V;
            const T* p = g + (i64)gr * ld + gc;
            if (vec && gr < rows_n && gc + V <= cols_n) {
                const Vec<T, V> x = *reinterpret_cast<const Vec<T, V>*>(p);
#pragma unroll
                for (int v = 0; v < V; ++v) reg[i][v] = x.v[v];
            } else {
#pragma unroll
                for (int v = 0; v < V; ++v) reg[i][v] = (gr < rows_n && gc + v < cols_n) ? p[v] : T(0);
            }
        }
    }

    // -> S[k][mn] (S has LD columns), through Math::to_smem (TF32 rounding, or none)
    template <typename Math, int LD>
    __device__ __forceinline__ void store(T (*S)[LD]) const
    {
#pragma unroll
        for (int i = 0; i < CHUNKS; ++i) {
            const int c = threadIdx.x + i * THREADS;
            const int r = c / CHUNKS_PER_ROW, col = (c % CHUNKS_PER_ROW) * V;
#pragma unroll
            for (int v = 0; v < V; ++v) {
                if (K_CONTIGUOUS) S[col + v][r] = Math::to_smem(reg[i][v]);
                else S[r][col + v] = Math::to_smem(reg[i][v]);
            }
        }
    }
};

__device__ __forceinline__ bool aligned16(const void* p) { return ((unsigned long long)p & 15ull) == 0; }

// grid = (ceil(N / BN), ceil(M / BM), min(batch * splits, 65535)), block = THREADS.
// Launch z = (matrix z of the batch) * splits + (K range s): the range is
// [s * k_per_split, min(K, (s + 1) * k_per_split)), k_per_split a multiple of BK, and
// its result goes to C + z * stride_c + s * stride_split (splits = 1: C itself).
// accumulate = 0: C = op(A) @ op(B) (C is not read: it may hold garbage);
// accumulate = 1: C += op(A) @ op(B).  TF32: tensor cores (T = float only, see 7.).
template <typename T, bool TRANS_A, bool TRANS_B, int BN, bool TF32>
__global__ void __launch_bounds__(THREADS)
gemm_kernel(const T* __restrict__ A, const T* __restrict__ B, T* __restrict__ C,
            int M, int N, int K, i64 stride_a, i64 stride_b, i64 stride_c, int batch, int accumulate,
            int splits, int k_per_split, i64 stride_split)
{
    typedef typename Pick<TF32, Tf32Math<BN>, FmaMath<T, BN>>::type Math;
    // op(A) tile: BM x BK, stored (m rows, k contiguous) or, TRANS_A, (k rows, m contiguous)
    typedef TileCopy<T, TRANS_A ? BK : BM, TRANS_A ? BM : BK, !TRANS_A> CopyA;
    // op(B) tile: BK x BN, stored (k rows, n contiguous) or, TRANS_B, (n rows, k contiguous)
    typedef TileCopy<T, TRANS_B ? BN : BK, TRANS_B ? BK : BN, TRANS_B> CopyB;

    // (aligned for FmaMath's vector loads: 4 elements, 16 bytes of float, 32 of double)
    alignas(32) __shared__ T As[2][BK][BM + Math::PAD];   // As[buf][k][m] = op(A)[m0 + m, k0 + k]
    alignas(32) __shared__ T Bs[2][BK][BN + Math::PAD];   // Bs[buf][k][n] = op(B)[k0 + k, n0 + n]

    const int m0 = blockIdx.y * BM;           // this block's tile of C
    const int n0 = blockIdx.x * BN;
    const int lda = TRANS_A ? M : K, ldb = TRANS_B ? K : N;   // row lengths as stored

    for (int zs = blockIdx.z; zs < batch * splits; zs += gridDim.z) {
        const int z = zs / splits, s = zs % splits;
        const T* a = A + z * stride_a;
        const T* b = B + z * stride_b;
        T* c = C + z * stride_c + s * stride_split;
        const int k_begin = s * k_per_split;
        const int k_end = K - k_begin < k_per_split ? K : k_begin + k_per_split;
        const bool vec_a = aligned16(a) && lda % CopyA::V == 0;     // uniform over the block
        const bool vec_b = aligned16(b) && ldb % CopyB::V == 0;

        CopyA copy_a;
        CopyB copy_b;
        // the tiles of op(A) and op(B) at depth k0, global -> registers
        auto load_tiles = [&](int k0) {
            if (TRANS_A) copy_a.load(a, lda, k0, k_end, m0, M, vec_a);
            else copy_a.load(a, lda, m0, M, k0, k_end, vec_a);
            if (TRANS_B) copy_b.load(b, ldb, n0, N, k0, k_end, vec_b);
            else copy_b.load(b, ldb, k0, k_end, n0, N, vec_b);
        };

        Math math;
        math.zero();

        // ---- prologue: tile 0 to smem[0]
        load_tiles(k_begin);
        copy_a.template store<Math>(As[0]);
        copy_b.template store<Math>(Bs[0]);
        __syncthreads();

        const int steps = (k_end - k_begin + BK - 1) / BK;
        for (int t = 0; t < steps; ++t) {
            const int cur = t & 1;
            const bool more = t + 1 < steps;
            if (more) load_tiles(k_begin + (t + 1) * BK);   // in flight during the math below
            math.step(As[cur], Bs[cur]);
            if (more) {                        // the other buffer: read in step t-1, free since its barrier
                copy_a.template store<Math>(As[cur ^ 1]);
                copy_b.template store<Math>(Bs[cur ^ 1]);
            }
            __syncthreads();                   // smem[cur ^ 1] complete; smem[cur] free for step t+1's stores
        }

        math.store(c, M, N, m0, n0, accumulate);
    }
}

// Split-K's second half: C[z] (+)= sum over s of partial[s][z], in order s = 0, 1, ...
// partial is (splits, batch, M, N); C is (batch, M, N), or (batch, N, M) when
// transpose (gemm.py computed C^T's product).  A grid-stride loop over batch*M*N.
template <typename T>
__global__ void __launch_bounds__(REDUCE_THREADS)
gemm_splitk_reduce_kernel(const T* __restrict__ partial, T* __restrict__ C, int M, int N, int batch, int splits,
                          int transpose, int accumulate)
{
    const i64 mn = (i64)M * N, total = mn * batch;
    for (i64 i = blockIdx.x * (i64)blockDim.x + threadIdx.x; i < total; i += (i64)gridDim.x * blockDim.x) {
        T sum = T(0);
        for (int s = 0; s < splits; ++s) sum += partial[s * total + i];
        i64 at = i;
        if (transpose) {
            const i64 z = i / mn, r = i % mn;
            at = z * mn + (r % N) * M + r / N;
        }
        C[at] = accumulate ? C[at] + sum : sum;
    }
}
