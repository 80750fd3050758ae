// Fused SGD: ONE kernel launch updates every parameter of the model
// ("multi-tensor apply").  A ResNet-20 has ~65 parameter tensors; a per-tensor
// update is 3-5 small kernels each -- a few hundred launches per step, each
// too short to fill the GPU.  Here one launch covers them all.
//
// The tensors are described by a table in device memory, built once by the
// Python side (kernels/cuda/sgd.py, sgd_step) and cached:
//
//   table[0*T .. 1*T)  parameter pointers   (as 64-bit integers)
//   table[1*T .. 2*T)  gradient pointers
//   table[2*T .. 3*T)  momentum-buffer pointers (unused when momentum == 0)
//   table[3*T .. 4*T)  sizes (elements)
//   table[4*T .. 5*T]  first block of each tensor (prefix sums of
//                      ceil(size / CHUNK)); entry T = total blocks
//
// Thread mapping: block b updates elements [chunk*CHUNK, (chunk+1)*CHUNK) of
// ONE tensor t -- the t with first_block[t] <= b < first_block[t+1], found by a
// binary search in the table (log2(T) steps, once per block) -- with its
// threads striding over the chunk (coalesced).  Empty tensors are left out of
// the table by the Python side.
//
// The update is PyTorch's (torch.optim.SGD) and minires's CPU SGD:
//     g = grad + weight_decay * p
//     buf = g  (first step)   or   momentum * buf + (1 - dampening) * g
//     g = g + momentum * buf  (nesterov)   or   buf
//     p = p - lr * g
// computed in the parameters' type T, like the CPU optimizer.
//
// lr comes either as a plain argument or, when lr_ptr is not null, from device
// memory: a captured CUDA graph replays its kernels with the arguments they had
// at capture, so a learning-rate schedule must write the rate to memory.

typedef long long i64;
typedef unsigned long long u64;

constexpr int SGD_CHUNK = 4096;               // elements per block (16 per thread at 256 threads)

template <typename T>
__global__ void sgd_multi_tensor_kernel(const u64* __restrict__ table, int n_tensors,
                                        double lr, const double* __restrict__ lr_ptr,
                                        double momentum, double weight_decay, double dampening,
                                        int nesterov, int first_step)
{
    const u64* param_ptrs = table;
    const u64* grad_ptrs = table + n_tensors;
    const u64* buf_ptrs = table + 2 * n_tensors;
    const i64* sizes = reinterpret_cast<const i64*>(table + 3 * n_tensors);
    const i64* first_block = reinterpret_cast<const i64*>(table + 4 * n_tensors);

    // which tensor: the last t with first_block[t] <= blockIdx.x
    const i64 block = blockIdx.x;
    int lo = 0, hi = n_tensors - 1;
    while (lo < hi) {
        const int mid = (lo + hi + 1) / 2;
        if (first_block[mid] <= block) lo = mid; else hi = mid - 1;
    }
    const int t = lo;
    const i64 begin = (block - first_block[t]) * SGD_CHUNK;
    const i64 size = sizes[t];
    const i64 end = begin + SGD_CHUNK < size ? begin + SGD_CHUNK : size;

    T* p = reinterpret_cast<T*>(param_ptrs[t]);
    const T* grad = reinterpret_cast<const T*>(grad_ptrs[t]);
    T* buf = reinterpret_cast<T*>(buf_ptrs[t]);

    const T lr_t = (T)(lr_ptr != nullptr ? *lr_ptr : lr);
    const T mom = (T)momentum, wd = (T)weight_decay, keep = (T)(1.0 - dampening);
    const bool use_momentum = momentum != 0.0, use_wd = weight_decay != 0.0;

    for (i64 i = begin + threadIdx.x; i < end; i += blockDim.x) {
        T d = grad[i];
        if (use_wd) d += wd * p[i];
        if (use_momentum) {
            const T v = first_step ? d : mom * buf[i] + keep * d;
            buf[i] = v;
            d = nesterov ? d + mom * v : v;
        }
        p[i] -= lr_t * d;
    }
}
