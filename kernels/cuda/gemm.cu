// minires's own matrix multiply: C = op(A) @ op(B)  (or C += ..., see `accumulate`)
//
// A kernel written to be read.  It is the classic "shared-memory tiling +
// register blocking" GEMM that every GPU course builds up to; cuBLAS is faster
// (it adds vectorised loads, double buffering, tensor cores...), but this one
// fits on a page and every line can be explained.  minires uses it where cuBLAS
// cannot be used: CuPy refuses to call cuBLAS while a CUDA graph is being
// captured on a stream, so a captured training step does its convolutions'
// products here (kernels/cuda/__init__.py: GEMM = 'own').
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
// 2. Shared-memory tiling.  One thread BLOCK computes one BM x BN tile of C.
//    It walks K in steps of BK: each step the block's threads copy a BM x BK
//    tile of A and a BK x BN tile of B from global memory into shared memory
//    (fast, on-chip, shared by the block), synchronise, and then every thread
//    does its multiply-adds from shared memory.  Each global element is now
//    read once per tile instead of once per use: global traffic drops by a
//    factor of about BM (for B) and BN (for A).
//
// 3. Register blocking.  Reading shared memory is faster than global memory
//    but is still an instruction per operand.  So each THREAD computes not one
//    but TM x TN elements of C, held in registers (`acc`).  Per k it loads TM
//    values of A and TN values of B into registers and does TM*TN
//    multiply-adds with them: TM + TN shared loads for TM*TN FMAs (4 + 4 loads
//    for 16 FMAs here, instead of 2 loads per FMA).
//
//    Which C elements a thread owns: thread (tx, ty) of the THREADS_X x
//    THREADS_Y grid owns rows ty, ty + THREADS_Y, ty + 2*THREADS_Y, ... and
//    columns tx, tx + THREADS_X, ...  (strided, not a contiguous 4x4 patch):
//    then the 32 threads of a warp, which differ in tx, read 32 consecutive
//    words of the B tile (no shared-memory bank conflicts) and write 32
//    consecutive elements of a C row (a coalesced store).
//
// 4. Odd shapes.  M, N, K need not be multiples of the tiles: loads outside
//    the matrix put 0 in shared memory (adding 0*x changes nothing) and stores
//    outside C are skipped.  So (1,1,1) and (17,33,65) run the same code.
//
// 5. Coalesced loads.  When copying a tile, consecutive threads must read
//    consecutive addresses.  A stored M x K is contiguous along k, stored K x M
//    (TRANS_A) along m; the copy loop walks the tile in the matching order, and
//    both cases land in the same shared layout As[k][m] (A's tile stored
//    "k-major", so that the compute loop reads TM values of one k row).  The
//    +PAD column keeps a column-order write (consecutive k) off a single
//    shared-memory bank: with rows of BM+1 words, consecutive rows start in
//    consecutive banks.
//
// Index arithmetic: element offsets are 64-bit (row * ld can pass 2^31); M, N
// and K themselves are checked to fit in int by the Python side.
// ---------------------------------------------------------------------------

typedef long long i64;

constexpr int BM = 64;                        // rows of C per block
constexpr int BN = 64;                        // columns of C per block
constexpr int BK = 16;                        // depth of one K step (the shared tiles are BM x BK and BK x BN)
constexpr int TM = 4;                         // rows of C per thread (registers)
constexpr int TN = 4;                         // columns of C per thread
constexpr int THREADS_X = BN / TN;            // 16 threads across a tile's columns
constexpr int THREADS_Y = BM / TM;            // 16 threads down its rows
constexpr int THREADS = THREADS_X * THREADS_Y;   // 256 threads per block
constexpr int PAD = 1;                        // shared-memory padding, see 5.

static_assert(BM % TM == 0 && BN % TN == 0, "a tile must split evenly into thread tiles");
static_assert((BM * BK) % THREADS == 0 && (BK * BN) % THREADS == 0,
              "each thread copies the same number of tile elements");

// grid = (ceil(N / BN), ceil(M / BM), min(batch, 65535)), block = THREADS.
// accumulate = 0: C = op(A) @ op(B) (C is not read: it may hold garbage);
// accumulate = 1: C += op(A) @ op(B).
template <typename T, bool TRANS_A, bool TRANS_B>
__global__ void __launch_bounds__(THREADS)
gemm_kernel(const T* __restrict__ A, const T* __restrict__ B, T* __restrict__ C,
            int M, int N, int K, i64 stride_a, i64 stride_b, i64 stride_c, int batch, int accumulate)
{
    __shared__ T As[BK][BM + PAD];            // As[k][m] = op(A)[m0 + m, k0 + k]
    __shared__ T Bs[BK][BN + PAD];            // Bs[k][n] = op(B)[k0 + k, n0 + n]

    const int tx = threadIdx.x % THREADS_X;
    const int ty = threadIdx.x / THREADS_X;
    const int m0 = blockIdx.y * BM;           // this block's tile of C
    const int n0 = blockIdx.x * BN;

    for (int z = blockIdx.z; z < batch; z += gridDim.z) {
        const T* a = A + z * stride_a;
        const T* b = B + z * stride_b;
        T* c = C + z * stride_c;

        T acc[TM][TN];
#pragma unroll
        for (int i = 0; i < TM; ++i)
#pragma unroll
            for (int j = 0; j < TN; ++j)
                acc[i][j] = T(0);

        for (int k0 = 0; k0 < K; k0 += BK) {
            // ---- copy the A tile (BM x BK) and the B tile (BK x BN) to shared memory
#pragma unroll
            for (int r = 0; r < BM * BK / THREADS; ++r) {
                const int l = threadIdx.x + r * THREADS;     // this thread's r-th element of the tile
                // fast index = the contiguous one in global memory (coalesced reads)
                const int m = TRANS_A ? l % BM : l / BK;
                const int k = TRANS_A ? l / BM : l % BK;
                const int gm = m0 + m, gk = k0 + k;
                T v = T(0);
                if (gm < M && gk < K)
                    v = TRANS_A ? a[(i64)gk * M + gm] : a[(i64)gm * K + gk];
                As[k][m] = v;
            }
#pragma unroll
            for (int r = 0; r < BK * BN / THREADS; ++r) {
                const int l = threadIdx.x + r * THREADS;
                const int n = TRANS_B ? l / BK : l % BN;
                const int k = TRANS_B ? l % BK : l / BN;
                const int gn = n0 + n, gk = k0 + k;
                T v = T(0);
                if (gn < N && gk < K)
                    v = TRANS_B ? b[(i64)gn * K + gk] : b[(i64)gk * N + gn];
                Bs[k][n] = v;
            }
            __syncthreads();                  // the tiles are complete before anyone reads them

            // ---- multiply the tiles: BK rank-1 updates of the thread's TM x TN registers
#pragma unroll
            for (int k = 0; k < BK; ++k) {
                T a_frag[TM], b_frag[TN];
#pragma unroll
                for (int i = 0; i < TM; ++i)
                    a_frag[i] = As[k][ty + i * THREADS_Y];
#pragma unroll
                for (int j = 0; j < TN; ++j)
                    b_frag[j] = Bs[k][tx + j * THREADS_X];
#pragma unroll
                for (int i = 0; i < TM; ++i)
#pragma unroll
                    for (int j = 0; j < TN; ++j)
                        acc[i][j] += a_frag[i] * b_frag[j];
            }
            __syncthreads();                  // everyone is done reading before the next copy overwrites
        }

        // ---- write the thread's TM x TN results (skipping those outside C)
#pragma unroll
        for (int i = 0; i < TM; ++i) {
            const int gm = m0 + ty + i * THREADS_Y;
            if (gm >= M) continue;
#pragma unroll
            for (int j = 0; j < TN; ++j) {
                const int gn = n0 + tx + j * THREADS_X;
                if (gn >= N) continue;
                const i64 at = (i64)gm * N + gn;
                c[at] = accumulate ? c[at] + acc[i][j] : acc[i][j];
            }
        }
    }
}
