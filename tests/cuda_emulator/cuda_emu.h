// A small CUDA emulator for testing minires's kernels on the CPU.
//
// Every GPU thread of a block is a *fiber* (its own stack, switched cooperatively
// on one OS thread); the blocks of a grid run one after another, so a `static`
// variable serves as __shared__ memory.  __syncthreads() and the warp shuffles
// are real barriers: a fiber that reaches one is suspended until every thread it
// waits for has arrived, so data races across a barrier show up as they would on
// a GPU (a missing __syncthreads reads stale shared memory).  What CUDA calls
// undefined behaviour is reported as an error instead of being emulated:
//   * a __syncthreads() that not every live thread of the block reaches at the
//     same source line, or that a thread skips by returning early;
//   * a full-mask warp shuffle that not all 32 lanes execute together (at one
//     line, with one mask), e.g. in a partial warp or after some lanes returned;
//   * threads left waiting on each other (a deadlock).
// Built as a plain C++20 shared library per .cu file (see gen.py); compile with
// -DEMU_UCONTEXT to use ucontext instead of the x86-64 switch (slower, portable,
// and understood by sanitizers).
#pragma once
#define CUDA_EMU 1        // for sources that pick an emulated stand-in for inline PTX (gemm.cu)
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <dlfcn.h>
#include <sys/mman.h>

#include <algorithm>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#if defined(EMU_UCONTEXT) || !defined(__x86_64__)
#define EMU_USE_UCONTEXT 1
#include <ucontext.h>
#endif

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __restrict__ __restrict
// __shared__ variables are function-local statics (CUDA allows no other statics in device
// code).  gen.py lists them from the library's symbol table, and the emulator fills them
// with 0xFF bytes (NaN, -1) before every block: a read of shared memory that no thread of
// the block wrote gives garbage, as on a GPU, not what the previous block left there.
#define __shared__ static
#define __launch_bounds__(...)

struct uint3 { unsigned x = 0, y = 0, z = 0; };
struct dim3 { unsigned x = 1, y = 1, z = 1; };
static thread_local uint3 threadIdx, blockIdx;
static thread_local dim3 blockDim, gridDim;

namespace emu {

// ------------------------------------------------------------ context switch
#ifndef EMU_USE_UCONTEXT
// switch_stack(&save, to): saves the callee-saved registers, the SSE and x87
// control words and the stack pointer in *save, then resumes the context at `to`.
extern "C" void emu_switch_stack(void** save, void* to);
extern "C" void emu_fiber_entry();
asm(R"(
    .text
    .globl emu_switch_stack
    .hidden emu_switch_stack
    .type emu_switch_stack,@function
emu_switch_stack:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    subq $8, %rsp
    stmxcsr (%rsp)
    fnstcw 4(%rsp)
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    ldmxcsr (%rsp)
    fldcw 4(%rsp)
    addq $8, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .size emu_switch_stack, .-emu_switch_stack

    .globl emu_fiber_entry
    .hidden emu_fiber_entry
    .type emu_fiber_entry,@function
emu_fiber_entry:
    movq %rbx, %rdi
    call emu_fiber_main
    ud2
    .size emu_fiber_entry, .-emu_fiber_entry
)");
#endif

enum State { RUNNABLE, AT_BLOCK_BARRIER, AT_WARP_BARRIER, DONE, FAILED };

struct Fiber {
#ifdef EMU_USE_UCONTEXT
    ucontext_t ctx;
#else
    void* sp = nullptr;
#endif
    char* stack = nullptr;
    unsigned tid = 0;
    State state = RUNNABLE;
    int line = 0;                 // source line of the barrier it waits at
    unsigned mask = 0;            // shuffle mask it waits with
    unsigned shuffles = 0;        // shuffles done in this block (picks the slot buffer)
};

struct Scheduler;
static thread_local Scheduler* current = nullptr;

constexpr size_t STACK_BYTES = 256 * 1024;
constexpr size_t GUARD_BYTES = 4096;

struct Scheduler {
    void (*body)(void*) = nullptr;   // runs the kernel with the launch's arguments
    void* body_arg = nullptr;
    std::vector<Fiber> fibers;
    unsigned nthreads = 0, warps = 0;
    std::vector<uint64_t> slots;      // [warp][parity][lane] shuffle values
    std::vector<uint32_t> mma_slots;  // [warp][parity][lane][6] operand registers of an mma.sync
    Fiber* running = nullptr;
    std::string error;
#ifdef EMU_USE_UCONTEXT
    ucontext_t main_ctx;
#else
    void* main_sp = nullptr;
#endif

    ~Scheduler();

    void switch_to(Fiber& f)
    {
        running = &f;
        threadIdx = {f.tid, 0, 0};
#ifdef EMU_USE_UCONTEXT
        swapcontext(&main_ctx, &f.ctx);
#else
        emu_switch_stack(&main_sp, f.sp);
#endif
        running = nullptr;
    }

    void yield()                      // from the running fiber back to the scheduler
    {
        Fiber& f = *running;
#ifdef EMU_USE_UCONTEXT
        swapcontext(&f.ctx, &main_ctx);
#else
        emu_switch_stack(&f.sp, main_sp);
#endif
        threadIdx = {f.tid, 0, 0};     // (other fibers ran meanwhile)
    }

    void fail(const std::string& what)   // from a fiber: stop the launch with an error
    {
        if (error.empty()) error = what;
        running->state = FAILED;
        yield();
        __builtin_unreachable();
    }

    std::string where() const
    {
        char buf[160];
        snprintf(buf, sizeof buf, "block (%u, %u, %u) of grid (%u, %u, %u), %u threads", blockIdx.x, blockIdx.y,
                 blockIdx.z, gridDim.x, gridDim.y, gridDim.z, nthreads);
        return buf;
    }

    static void fiber_main(Fiber* f);
    void make_fibers(unsigned n);
    void run_block();
};

// Fiber stacks are kept for the next launch on this OS thread (mapping them is not free).
static thread_local std::vector<char*> stack_pool;

inline Scheduler::~Scheduler()
{
    for (auto& f : fibers)
        if (f.stack) stack_pool.push_back(f.stack);
}

extern "C" __attribute__((visibility("hidden"))) void emu_fiber_main(Fiber* f) { Scheduler::fiber_main(f); }

inline void Scheduler::fiber_main(Fiber* f)
{
    for (;;) {                        // one pass per block; the scheduler resets the state
        current->body(current->body_arg);
        f->state = DONE;
        current->yield();
    }
}

#ifdef EMU_USE_UCONTEXT
static void ucontext_entry(unsigned lo, unsigned hi)
{
    Scheduler::fiber_main(reinterpret_cast<Fiber*>((uintptr_t)lo | ((uintptr_t)hi << 32)));
}
#endif

inline void Scheduler::make_fibers(unsigned n)
{
    fibers.resize(n);
    for (unsigned t = 0; t < n; ++t) {
        Fiber& f = fibers[t];
        f.tid = t;
        if (!stack_pool.empty()) {
            f.stack = stack_pool.back();
            stack_pool.pop_back();
        } else {
            void* mem = mmap(nullptr, STACK_BYTES + GUARD_BYTES, PROT_READ | PROT_WRITE,
                             MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
            if (mem == MAP_FAILED) throw std::runtime_error("emu: cannot map a fiber stack");
            f.stack = static_cast<char*>(mem);
            mprotect(f.stack, GUARD_BYTES, PROT_NONE);     // a stack overflow faults instead of corrupting
        }
#ifdef EMU_USE_UCONTEXT
        getcontext(&f.ctx);
        f.ctx.uc_stack.ss_sp = f.stack + GUARD_BYTES;
        f.ctx.uc_stack.ss_size = STACK_BYTES;
        f.ctx.uc_link = nullptr;
        const uintptr_t p = reinterpret_cast<uintptr_t>(&f);
        makecontext(&f.ctx, reinterpret_cast<void (*)()>(ucontext_entry), 2, (unsigned)(p & 0xffffffffu),
                    (unsigned)(p >> 32));
#else
        // The first switch to the fiber "returns" into emu_fiber_entry with rbx = &f.
        uintptr_t top = reinterpret_cast<uintptr_t>(f.stack + GUARD_BYTES + STACK_BYTES) & ~uintptr_t(15);
        uint64_t* sp = reinterpret_cast<uint64_t*>(top);
        *--sp = reinterpret_cast<uint64_t>(&emu_fiber_entry);   // return address: rsp = top after it
        *--sp = 0;                                         // rbp
        *--sp = reinterpret_cast<uint64_t>(&f);            // rbx
        *--sp = 0; *--sp = 0; *--sp = 0; *--sp = 0;        // r12 - r15
        uint32_t csr[2];
        asm volatile("stmxcsr %0" : "=m"(csr[0]));
        asm volatile("fnstcw %0" : "=m"(csr[1]));
        uint64_t word;
        memcpy(&word, csr, 8);
        *--sp = word;                                      // mxcsr | x87 control word
        f.sp = sp;
#endif
    }
}

// (address, bytes) of every __shared__ variable, set through emu_set_shared (gen.py's list)
static std::vector<std::pair<char*, size_t>> shared_regions;

// The threads of a block run one after another up to their next barrier, in increasing
// order on one pass and decreasing order on the next: a missing __syncthreads() shows up
// whichever of two threads is meant to write first.
inline void Scheduler::run_block()
{
    for (auto& [p, n] : shared_regions) memset(p, 0xFF, n);
    for (auto& f : fibers) { f.state = RUNNABLE; f.shuffles = 0; }
    bool backwards = ((blockIdx.x + blockIdx.y + blockIdx.z) & 1u) != 0;
    for (;;) {
        bool live = false;
        for (unsigned i = 0; i < nthreads; ++i) {
            Fiber& f = fibers[backwards ? nthreads - 1 - i : i];
            if (f.state != RUNNABLE) continue;
            switch_to(f);
            if (f.state == FAILED) throw std::runtime_error("emu: " + error + " [" + where() + "]");
        }
        backwards = !backwards;
        // Every fiber now waits at a barrier or is done: release what can go on.
        unsigned at_block = 0, done = 0;
        int block_line = -1;
        for (auto& f : fibers) {
            if (f.state == DONE) { ++done; continue; }
            live = true;
            if (f.state == AT_BLOCK_BARRIER) {
                if (block_line >= 0 && f.line != block_line) {
                    throw std::runtime_error("emu: threads wait at __syncthreads() on different lines (" +
                                             std::to_string(block_line) + " and " + std::to_string(f.line) +
                                             "): divergent __syncthreads [" + where() + "]");
                }
                block_line = f.line;
                ++at_block;
            }
        }
        if (!live) return;
        // warps whose lanes all wait at a shuffle
        for (unsigned w = 0; w < warps; ++w) {
            const unsigned lo = 32 * w, hi = std::min(nthreads, lo + 32);
            unsigned waiting = 0;
            int line = -1;
            unsigned mask = 0;
            for (unsigned t = lo; t < hi; ++t) {
                const Fiber& f = fibers[t];
                if (f.state != AT_WARP_BARRIER) continue;
                if (waiting && (f.line != line || f.mask != mask))
                    throw std::runtime_error("emu: lanes of warp " + std::to_string(w) +
                                             " shuffle at different lines/masks (lines " + std::to_string(line) +
                                             " and " + std::to_string(f.line) + ") [" + where() + "]");
                line = f.line;
                mask = f.mask;
                ++waiting;
            }
            if (!waiting) continue;
            // lanes named by the mask that do not take part: exited, elsewhere, or absent
            unsigned missing = 0;
            for (unsigned lane = 0; lane < 32; ++lane) {
                if (!(mask >> lane & 1u)) continue;
                const unsigned t = lo + lane;
                if (t >= hi || fibers[t].state != AT_WARP_BARRIER) {
                    if (t >= hi || fibers[t].state == DONE) {
                        throw std::runtime_error(
                            "emu: warp shuffle at line " + std::to_string(line) + " with mask 0x" +
                            [&] { char b[16]; snprintf(b, sizeof b, "%x", mask); return std::string(b); }() +
                            " but lane " + std::to_string(lane) + " of warp " + std::to_string(w) +
                            (t >= hi ? " does not exist (partial warp)" : " has exited") + " [" + where() + "]");
                    }
                    ++missing;
                }
            }
            if (missing) continue;                         // those lanes are still on their way
            for (unsigned t = lo; t < hi; ++t)
                if (fibers[t].state == AT_WARP_BARRIER) fibers[t].state = RUNNABLE;
        }
        if (at_block && at_block + done == nthreads) {
            if (done) {
                throw std::runtime_error("emu: __syncthreads() at line " + std::to_string(block_line) + " after " +
                                         std::to_string(done) + " thread(s) of the block returned [" + where() + "]");
            }
            for (auto& f : fibers) f.state = RUNNABLE;
        }
        bool runnable = false;
        for (auto& f : fibers) runnable |= f.state == RUNNABLE;
        if (!runnable)
            throw std::runtime_error("emu: deadlock: threads wait at barriers that cannot complete [" + where() + "]");
    }
}

// ----------------------------------------------------- device-side primitives
inline void syncthreads_at(int line)
{
    Scheduler* s = current;
    Fiber& f = *s->running;
    f.state = AT_BLOCK_BARRIER;
    f.line = line;
    s->yield();
}

template <typename T> T shuffle(unsigned mask, T v, int src_lane, int line)
{
    static_assert(sizeof(T) <= 8, "emu: shuffles of at most 8 bytes");
    Scheduler* s = current;
    Fiber& f = *s->running;
    const unsigned lane = f.tid % 32, warp = f.tid / 32;
    if (!(mask >> lane & 1u)) s->fail("a lane shuffles with a mask that leaves it out, line " + std::to_string(line));
    uint64_t* slots = &s->slots[(warp * 2 + (f.shuffles & 1)) * 32];
    uint64_t bits = 0;
    memcpy(&bits, &v, sizeof(T));
    slots[lane] = bits;
    f.state = AT_WARP_BARRIER;
    f.line = line;
    f.mask = mask;
    s->yield();
    ++f.shuffles;
    if (src_lane < 0 || src_lane >= 32) src_lane = lane;
    if (!(mask >> src_lane & 1u))
        s->fail("a lane reads lane " + std::to_string(src_lane) + ", outside the shuffle mask, line " +
                std::to_string(line));
    T r;
    memcpy(&r, &slots[src_lane], sizeof(T));
    return r;
}

// ------------------------------------------------------ tensor-core stand-ins
// PTX cvt.rna.tf32.f32: a float rounded to TF32 (8-bit exponent, 10-bit mantissa),
// to nearest with ties away from zero (rna); the result is a .b32 whose low 13 bits
// are 0.  Infinities stay; a NaN stays a NaN.  Overflow rounds to infinity.
inline uint32_t cvt_rna_tf32_f32(float x)
{
    uint32_t u;
    memcpy(&u, &x, 4);
    if ((u & 0x7f800000u) == 0x7f800000u) return (u & 0xffffe000u) | ((u & 0x007fffffu) ? 0x00400000u : 0u);
    return (u + 0x1000u) & 0xffffe000u;       // + half a TF32 ulp to the magnitude, then truncate
}

// PTX mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {d}, {a}, {b}, {d}: D += A B
// for one warp, A 16 x 8, B 8 x 8, D 16 x 8.  `.aligned`: all 32 lanes execute it
// together (a warp barrier here, like a full-mask shuffle: a partial warp, an exited
// lane or lanes at different lines are errors).  Lane = 4 g + t holds the elements
// the PTX ISA assigns it:
//   a[0..3] = A(g, t), A(g + 8, t), A(g, t + 4), A(g + 8, t + 4)
//   b[0..1] = B(t, g), B(t + 4, g)
//   d[0..3] = D(g, 2t), D(g, 2t + 1), D(g + 8, 2t), D(g + 8, 2t + 1)
// The unit reads only the TF32 bits of a and b (the low 13 bits are ignored, as on the
// GPU: a source that forgot cvt.rna gets truncation, not rounding).  Products of TF32
// numbers are exact in fp32; the emulator adds them to d in fp32 in k order 0..7 (the
// hardware's internal order and rounding of that sum are not modelled bit-exactly).
inline void mma_m16n8k8_tf32(float (&d)[4], const unsigned (&a)[4], const unsigned (&b)[2], int line)
{
    Scheduler* s = current;
    Fiber& f = *s->running;
    const unsigned lane = f.tid % 32, warp = f.tid / 32;
    uint32_t* slots = &s->mma_slots[(warp * 2 + (f.shuffles & 1)) * 32 * 6];
    for (int i = 0; i < 4; ++i) slots[lane * 6 + i] = a[i];
    slots[lane * 6 + 4] = b[0];
    slots[lane * 6 + 5] = b[1];
    f.state = AT_WARP_BARRIER;
    f.line = line;
    f.mask = 0xffffffffu;
    s->yield();
    ++f.shuffles;
    auto tf32 = [](uint32_t u) { u &= 0xffffe000u; float v; memcpy(&v, &u, 4); return v; };
    const unsigned g = lane / 4, t = lane % 4;
    for (int q = 0; q < 4; ++q) {
        const unsigned row = g + 8 * (q >> 1), col = 2 * t + (q & 1);
        float sum = d[q];
        for (unsigned k = 0; k < 8; ++k) {
            const uint32_t* holder_a = slots + (4 * (row % 8) + k % 4) * 6;     // lane holding A(row, k)
            const uint32_t* holder_b = slots + (4 * col + k % 4) * 6;           // lane holding B(k, col)
            sum += tf32(holder_a[(row >= 8 ? 1 : 0) + (k >= 4 ? 2 : 0)]) * tf32(holder_b[4 + (k >= 4 ? 1 : 0)]);
        }
        d[q] = sum;
    }
}

// ------------------------------------------------------------------- launch
template <typename... P, size_t... I>
void call_with(void (*k)(P...), void** args, std::index_sequence<I...>)
{
    k(*reinterpret_cast<std::remove_cv_t<P>*>(args[I])...);
}

template <typename... P> struct Bound {
    void (*kernel)(P...);
    void** args;
    static void run(void* self)
    {
        auto* b = static_cast<Bound*>(self);
        call_with(b->kernel, b->args, std::index_sequence_for<P...>{});
    }
};

// CuPy compiles with -ftz=true: single-precision denormals are flushed to zero.  The
// emulator sets the SSE flush-to-zero and denormals-are-zero modes while a kernel with a
// float parameter runs (on x86 they apply to doubles as well; doubles that small do not
// occur in minires's kernels).  -DEMU_NO_FTZ turns this off.
template <typename P> constexpr bool is_f32_param()
{
    using Q = std::remove_cv_t<P>;
    if constexpr (std::is_pointer_v<Q>) return std::is_same_v<std::remove_cv_t<std::remove_pointer_t<Q>>, float>;
    else return std::is_same_v<Q, float>;
}

struct FlushDenormals {
#if defined(__x86_64__) && !defined(EMU_NO_FTZ)
    unsigned saved = 0;
    bool on;
    explicit FlushDenormals(bool enable) : on(enable)
    {
        if (!on) return;
        asm volatile("stmxcsr %0" : "=m"(saved));
        unsigned csr = saved | 0x8040u;          // FTZ (bit 15) | DAZ (bit 6)
        asm volatile("ldmxcsr %0" : : "m"(csr));
    }
    ~FlushDenormals()
    {
        if (on) asm volatile("ldmxcsr %0" : : "m"(saved));
    }
#else
    explicit FlushDenormals(bool) {}
#endif
};

template <typename... P>
void launch(void (*k)(P...), dim3 grid, dim3 block, void** args)
{
    FlushDenormals ftz((is_f32_param<P>() || ...));
    if (block.y != 1 || block.z != 1) throw std::runtime_error("emu: 1-d blocks only");
    const unsigned n = block.x;
    if (n == 0 || n > 1024) throw std::runtime_error("emu: block of " + std::to_string(n) + " threads");
    Bound<P...> bound{k, args};
    Scheduler s;
    s.body = &Bound<P...>::run;
    s.body_arg = &bound;
    s.nthreads = n;
    s.warps = (n + 31) / 32;
    s.slots.assign(s.warps * 2 * 32, 0);
    s.mma_slots.assign(s.warps * 2 * 32 * 6, 0);
    Scheduler* saved = current;
    current = &s;
    blockDim = block;
    gridDim = grid;
    try {
        s.make_fibers(n);
        for (unsigned bz = 0; bz < grid.z; ++bz)
            for (unsigned by = 0; by < grid.y; ++by)
                for (unsigned bx = 0; bx < grid.x; ++bx) {
                    blockIdx = {bx, by, bz};
                    s.run_block();
                }
    } catch (...) {
        current = saved;
        throw;
    }
    current = saved;
}

}  // namespace emu

#define __syncthreads() ::emu::syncthreads_at(__LINE__)
#define __shfl_sync(mask, v, src) ::emu::shuffle((mask), (v), (int)(src), __LINE__)
#define __shfl_down_sync(mask, v, off)                                                       \
    ::emu::shuffle((mask), (v), (int)(threadIdx.x % 32) + (int)(off) < 32                     \
                                    ? (int)(threadIdx.x % 32) + (int)(off) : (int)(threadIdx.x % 32), __LINE__)
#define __shfl_up_sync(mask, v, off)                                                          \
    ::emu::shuffle((mask), (v), (int)(threadIdx.x % 32) - (int)(off) >= 0                    \
                                    ? (int)(threadIdx.x % 32) - (int)(off) : (int)(threadIdx.x % 32), __LINE__)
#define __shfl_xor_sync(mask, v, m) ::emu::shuffle((mask), (v), (int)(threadIdx.x % 32) ^ (int)(m), __LINE__)

inline float __int_as_float(int i) { float f; memcpy(&f, &i, 4); return f; }
inline float __uint_as_float(unsigned i) { float f; memcpy(&f, &i, 4); return f; }
inline unsigned __float_as_uint(float f) { unsigned i; memcpy(&i, &f, 4); return i; }
inline double __longlong_as_double(long long i) { double d; memcpy(&d, &i, 8); return d; }
inline int __float_as_int(float f) { int i; memcpy(&i, &f, 4); return i; }
inline long long __double_as_longlong(double d) { long long i; memcpy(&i, &d, 8); return i; }

// ------------------------------------------------------- entries for gen.py
// One token per kernel parameter, checked by the fake cupy's RawKernel against what it is given:
// scalars  i (int32) u (uint32) l (int64) L (uint64) f (float) d (double) b (bool)
// pointers p or P (P: to const) followed by the pointee: f32 f64 i32 u32 i64 u64 i8 u8 ? (other)
template <typename T> std::string scalar_code()
{
    using Q = std::remove_cv_t<T>;
    if constexpr (std::is_same_v<Q, bool>) return "b";
    else if constexpr (std::is_same_v<Q, float>) return "f";
    else if constexpr (std::is_same_v<Q, double>) return "d";
    else if constexpr (std::is_integral_v<Q> && sizeof(Q) == 4) return std::is_signed_v<Q> ? "i" : "u";
    else if constexpr (std::is_integral_v<Q> && sizeof(Q) == 8) return std::is_signed_v<Q> ? "l" : "L";
    else return "?";
}

template <typename T> std::string pointee_code()
{
    using Q = std::remove_cv_t<T>;
    if constexpr (std::is_same_v<Q, float>) return "f32";
    else if constexpr (std::is_same_v<Q, double>) return "f64";
    else if constexpr (std::is_integral_v<Q> && !std::is_same_v<Q, bool>)
        return std::string(std::is_signed_v<Q> ? "i" : "u") + std::to_string(8 * sizeof(Q));
    else return "?";
}

template <typename P> std::string param_code()
{
    using Q = std::remove_cv_t<P>;
    if constexpr (std::is_pointer_v<Q>) {
        using E = std::remove_pointer_t<Q>;
        return std::string(std::is_const_v<E> ? "P" : "p") + pointee_code<E>();
    } else {
        return scalar_code<Q>();
    }
}

struct Entry { const char* name; void (*run)(dim3, dim3, void**); std::string sig; };
template <auto K> void runner(dim3 g, dim3 b, void** a) { emu::launch(K, g, b, a); }
template <typename... P> std::string signature(void (*)(P...))
{
    std::string sig;
    ((sig += (sig.empty() ? "" : ",") + param_code<P>()), ...);
    return sig;
}
template <auto K> Entry make_entry(const char* name) { return Entry{name, &runner<K>, signature(K)}; }
