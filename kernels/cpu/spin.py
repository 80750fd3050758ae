"""Waiting a few hundred microseconds for another thread without sleeping.

minires.forkjoin hands a share of a kernel to a helper thread and later waits for it.
Waking a thread that sleeps on a lock took ~80 µs on the 2-core Xeon VM (2026-12-02:
the idle virtual CPU has to be woken by the hypervisor) -- as long as a batch-norm pass
at batch 32.  So before sleeping, the waiting side watches a flag for a while:
``spin_until`` reads it in a loop without the GIL (the other thread keeps running
Python), with an acquire load that LLVM may not hoist out of the loop, and the x86
``pause`` hint between reads.  For forkjoin's hand-over the flag is only a hint (the lock
that follows orders the two threads' memory); ``meet``, a barrier, orders it by itself
with release stores and acquire loads.
"""
import platform

from llvmlite import ir
from numba import njit
from numba.core import cgutils, types
from numba.extending import intrinsic

_X86 = platform.machine().lower() in ("x86_64", "amd64", "i386", "i686")


@intrinsic
def _load_acquire(typingctx, flags, index):
    """flags[index], read from memory on every call (an atomic load, acquire order)."""
    def codegen(context, builder, signature, args):
        array_type = signature.args[0]
        array = context.make_array(array_type)(context, builder, args[0])
        pointer = cgutils.get_item_pointer(context, builder, array_type, array, [args[1]],
                                           wraparound=False)
        return builder.load_atomic(pointer, "acquire", array_type.dtype.bitwidth // 8)
    return flags.dtype(flags, index), codegen


@intrinsic
def _store_release(typingctx, flags, index, value):
    """flags[index] = value, written to memory at once (an atomic store, release order)."""
    def codegen(context, builder, signature, args):
        array_type = signature.args[0]
        array = context.make_array(array_type)(context, builder, args[0])
        pointer = cgutils.get_item_pointer(context, builder, array_type, array, [args[1]],
                                           wraparound=False)
        item = context.cast(builder, args[2], signature.args[2], array_type.dtype)
        builder.store_atomic(item, pointer, "release", array_type.dtype.bitwidth // 8)
        return context.get_dummy_value()
    return types.none(flags, index, value), codegen


@intrinsic
def _pause(typingctx):
    """The x86 spin-wait hint (frees the core's pipeline for a sibling thread); a no-op elsewhere."""
    def codegen(context, builder, signature, args):
        if _X86:
            fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.VoidType(), []),
                                                "llvm.x86.sse2.pause")
            builder.call(fn, [])
        return context.get_dummy_value()
    return types.none(), codegen


@njit(nogil=True, cache=True)
def spin_until(flags, index, value, spins):
    """True as soon as flags[index] == value, False after ``spins`` reads that were not."""
    for _ in range(spins):
        if _load_acquire(flags, index) == value:
            return True
        _pause()
    return False


@njit(nogil=True, cache=True)
def publish_then_spin(flags, done_index, done_value, index, value, spins, settle):
    """flags[done_index] = done_value, then spin_until(flags, index, value, spins).  The
    store happens after this thread has let go of the GIL (a nogil function lets go on
    entry), so a thread that wakes on it finds the GIL free instead of sleeping on it.
    Once the value is seen, ``settle`` more pauses before returning (and asking for the
    GIL): the thread that set it is still running Python, holding the GIL, and asking now
    would put this thread to sleep on the GIL until it is let go -- minires.forkjoin's
    HELPER_SETTLE_US says what that costs."""
    _store_release(flags, done_index, done_value)
    if not spin_until(flags, index, value, spins):
        return False
    for _ in range(settle):
        _pause()
    return True


# How long meet waits before it gives up: ~30-90 s (a pause takes 10-40 ns).  A party
# that never arrives is a bug (its share raised before the meeting); giving up turns the
# hang into an error.
MEET_SPINS = 1 << 31


@njit(nogil=True, cache=True)
def meet(flags, k, parties, spins):
    """A barrier for ``parties`` threads that run at the same time (forkjoin's together
    mode): thread k marks flags[8k] (a fresh zeroed array per meeting; 64 bytes a party),
    then waits for every other mark -- True, or False after ``spins`` waits in all.  What
    each thread wrote before it arrived is visible to every thread after (release store,
    acquire loads)."""
    _store_release(flags, 8 * k, 1)
    for j in range(parties):
        while _load_acquire(flags, 8 * j) != 1:
            if spins <= 0:
                return False
            spins -= 1
            _pause()
    return True
