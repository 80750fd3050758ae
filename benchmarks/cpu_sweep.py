"""CPU sweep: minires vs PyTorch, train step and eval forward, ResNet-20/56/110 x batch 32/128/256.

    python benchmarks/cpu_sweep.py [--depths 20,56,110] [--batches 32,128,256]
                                   [--modes train,eval] [--repeats 5] [--warmup 2]
                                   [--threads N] [--isa avx2] [--rounds 1] [--json results.json]

What is timed, per configuration (framework, depth, batch, mode):
  train  one step: forward, cross-entropy, zero_grad, backward, SGD (momentum 0.9,
         weight decay 1e-4) -- what benchmarks/resnet20_step.py times for ResNet-20;
  eval   one forward in evaluation mode under no_grad (the running statistics);
the median of --repeats runs after --warmup untimed ones (minires's first step compiles
or loads its Numba kernels).  Both frameworks get the same number of threads
(--threads, default: the cores this process may use): minires.backend.set_num_threads
and torch.set_num_threads.  The models are the CIFAR ResNets with option-A shortcuts,
float32, random inputs: minires.models.resnet_cifar and benchmarks/torch_resnet.py.

Every configuration runs in a fresh subprocess, so that each has a peak memory of its own
and no thread pool of a previous run competes (two frameworks in one process slow each
other down: resnet20_step.py).  Memory, per configuration, from that process:
  peak MiB   the resident set's high-water mark (VmHWM in /proc/self/status; not
             getrusage's ru_maxrss, which a child inherits from the parent it was forked
             from): everything the process held at its worst, interpreter and libraries
             included -- what the machine has to have free;
  step MiB   the high-water mark of the timed steps alone minus the resident set just
             before them (after the imports, the model, the batch, and one step on a batch
             of 2 that loaded every kernel; the kernel's high-water mark is reset there,
             /proc/self/clear_refs): what the steps added -- activations, gradients,
             workspaces, and memory the allocator kept.  "-" where Linux's reset is missing.
Both are reported because neither alone is fair: torch's libraries are larger than
minires's (peak counts them), and minires keeps freed memory in the process on purpose
(kernels/cpu/memory.py; step counts it).  tracemalloc is not used: it sees NumPy's
allocations but not PyTorch's.

After the table: how the time grows with depth (ResNet-110 / ResNet-20 time against the
multiply-add ratio, 6.2x; a ratio at or below it means no per-layer overhead grows
faster than the work) and the per-image cost against the batch size.

--isa avx2 runs both frameworks as if the CPU had no AVX-512 -- the issue's other kind of
CPU, on an AVX-512 machine: every library that picks its code by the CPU's instruction set
is held to AVX2 through its own switch (ISA_ENVIRONMENT below: Numba's code generation,
NumPy's OpenBLAS kernels, PyTorch's ATen kernels and its oneDNN convolutions).  Each run
reports what its libraries say they use (the "isa" lines after the table), so a switch that
did not take shows (oneDNN reports nothing through PyTorch's API: ONEDNN_VERBOSE=1 prints
"isa:Intel AVX2" under the switch, checked 2026-12-02).  It is the same chip's caches and memory, so it approximates an AVX2-only
CPU; it is no substitute for running on one.

MINIRES_CONV_ALGO and MINIRES_FUSION in the environment reach the minires runs (--no-fusion
sets MINIRES_FUSION=0 for them).  Run on a quiet machine and record the figures with the
header's machine line and the date; on a shared machine compare only figures from one run.
"""
import argparse
import datetime
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
FRAMEWORKS = ("minires", "torch")
MODES = ("train", "eval")
# --isa avx2: each library's own switch for the instruction set its code uses
ISA_ENVIRONMENT = {"avx2": {"NUMBA_CPU_NAME": "haswell", "OPENBLAS_CORETYPE": "Haswell",
                            "ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2",
                            "DNNL_MAX_CPU_ISA": "AVX2"}}


def _blas_architecture():
    """OpenBLAS's kernel set as threadpoolctl reports it (e.g. SkylakeX, Haswell)."""
    try:
        from threadpoolctl import threadpool_info
        return ",".join(sorted({lib.get("architecture") or "?" for lib in threadpool_info()
                                if lib["user_api"] == "blas" and "torch" not in lib["filepath"]}))
    except ImportError:
        return "?"


def _rss_mib():
    """The resident set now (Linux /proc; None elsewhere)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return None


def _reset_high_water():
    """Reset the kernel's resident-set high-water mark (VmHWM) to the current RSS (Linux:
    "5" to /proc/self/clear_refs).  True if it worked."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _high_water_mib():
    """VmHWM from /proc/self/status (None where there is none)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 2**10
    except (OSError, ValueError):
        pass
    return None


def _peak_rss_mib():
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10     # bytes on macOS, KiB on Linux


def _measure(make_step, batch, warmup, repeats):
    """(median ms, step MiB, peak MiB); step: the timed steps' high-water mark above the
    RSS before them; peak: the process's high-water mark, all of it.
    One step on a batch of 2 comes first: it loads every kernel the step uses (minires:
    compiles them or reads Numba's cache), so that "step MiB" is the step's, not the JIT's."""
    from _timing import median_ms
    make_step(2)()
    step = make_step(batch)
    before, so_far = _rss_mib(), _high_water_mib()
    reset = _reset_high_water()           # else the import's own peak could hide the steps'
    ms = median_ms(step, repeats, warmup)
    after = _high_water_mib()
    if so_far is None or after is None:   # no /proc: getrusage (which fork + exec inherit)
        return ms, None, _peak_rss_mib()
    return ms, (after - before if reset else None), max(so_far, after)


def run_minires(depth, batch, mode, threads, warmup, repeats):
    import numpy as np

    import minires as mr
    from minires.nn import functional as F
    mr.backend.set_num_threads(threads)
    mr.manual_seed(0)
    model = mr.models.resnet_cifar(depth)
    opt = mr.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    if mode == "eval":
        model.eval()

    def make_step(n):
        rng = np.random.default_rng(0)
        x = mr.tensor(rng.standard_normal((n, 3, 32, 32)).astype(np.float32))
        y = mr.tensor(rng.integers(0, 10, n))

        def train():
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()

        def evaluate():
            with mr.no_grad():
                model(x)
        return train if mode == "train" else evaluate
    ms, step_mib, peak_mib = _measure(make_step, batch, warmup, repeats)
    import numba
    isa = f"Numba cpu {numba.config.CPU_NAME or 'host'}, OpenBLAS {_blas_architecture()}"
    return {"ms": ms, "step_mib": step_mib, "peak_mib": peak_mib, "threads": mr.backend.num_threads(),
            "fusion": mr.fusion_enabled(), "conv_algo": mr.ops.winograd.conv_algorithm(), "isa": isa}


def run_torch(depth, batch, mode, threads, warmup, repeats):
    import torch
    from torch_resnet import ResNetCifar
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = ResNetCifar(depth)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    if mode == "eval":
        model.eval()

    def make_step(n):
        g = torch.Generator().manual_seed(0)
        x = torch.randn(n, 3, 32, 32, generator=g)
        y = torch.randint(0, 10, (n,), generator=g)

        def train():
            loss = torch.nn.functional.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()

        def evaluate():
            with torch.no_grad():
                model(x)
        return train if mode == "train" else evaluate
    ms, step_mib, peak_mib = _measure(make_step, batch, warmup, repeats)
    isa = f"ATen {torch.backends.cpu.get_cpu_capability()}, oneDNN max ISA {os.environ.get('ONEDNN_MAX_CPU_ISA', 'all')}"
    return {"ms": ms, "step_mib": step_mib, "peak_mib": peak_mib, "threads": torch.get_num_threads(),
            "version": torch.__version__, "isa": isa}


def child(args):
    sys.path.insert(0, HERE)
    run = run_minires if args.child == "minires" else run_torch
    out = run(args.depths[0], args.batches[0], args.modes[0], args.threads, args.warmup, args.repeats)
    print(json.dumps(out))


def run_config(framework, depth, batch, mode, args):
    cmd = [sys.executable, os.path.abspath(__file__), "--child", framework, "--depths", str(depth),
           "--batches", str(batch), "--modes", mode, "--repeats", str(args.repeats),
           "--warmup", str(args.warmup), "--threads", str(args.threads)]
    env = dict(os.environ, **ISA_ENVIRONMENT.get(args.isa, {}))
    if args.no_fusion and framework == "minires":
        env["MINIRES_FUSION"] = "0"
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=HERE, env=env)
    if done.returncode != 0:
        return {"error": (done.stderr.strip().splitlines() or ["failed"])[-1]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def int_list(text):
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def choice_list(choices):
    def parse(text):
        values = [v.strip() for v in text.split(",") if v.strip()]
        bad = [v for v in values if v not in choices]
        if not values or bad:
            raise argparse.ArgumentTypeError(f"expected a comma-separated subset of {','.join(choices)}, "
                                             f"got {text!r}")
        return values
    return parse


def header(args):
    sys.path.insert(0, HERE)
    from _timing import cpu_description, machine
    from importlib import metadata
    versions = []
    for name, dist in (("NumPy", "numpy"), ("Numba", "numba"), ("PyTorch", "torch")):
        try:
            versions.append(f"{name} {metadata.version(dist)}")
        except metadata.PackageNotFoundError:
            versions.append(f"{name} not installed")
    versions = ", ".join(versions)
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                cwd=ROOT).stdout.strip() or "unknown"
    except OSError:
        commit = "unknown"
    # OPENBLAS_*: some machines pin OpenBLAS's kernels in the environment (the "isa" lines
    # after the table say which ones minires's GEMMs then ran)
    env = " ".join(f"{k}={os.environ[k]}" for k in ("MINIRES_CONV_ALGO", "MINIRES_FUSION", "OPENBLAS_CORETYPE",
                                                     "OPENBLAS_L2_SIZE") if k in os.environ)
    lines = [f"# CPU sweep, float32, {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, "
             f"commit {commit}",
             f"# {cpu_description()}",
             f"# {machine()}; {versions}; {platform.platform()}",
             f"# threads {args.threads} for both; median of {args.repeats} after {args.warmup} warm-up"
             + (f", {args.rounds} rounds (ms: the median over rounds; ratio: the median of the rounds' "
                f"paired ratios, then their range)" if args.rounds > 1 else "") + "; "
             f"load average {os.getloadavg()[0]:.1f} at the start"
             + (f"; {env}" if env else "") + ("; minires without fusion" if args.no_fusion else "")
             + (f"; --isa {args.isa}: " + " ".join(f"{k}={v}" for k, v in ISA_ENVIRONMENT[args.isa].items())
                if args.isa else "")]
    return "\n".join(lines)


def forward_macs(depth):
    import minires as mr
    return mr.count_macs(mr.models.resnet_cifar(depth), (3, 32, 32))


def fmt(value, spec, width):
    return f"{value:{width}{spec}}" if value is not None else f"{'-':>{width}}"


def combine(rounds):
    """One result per configuration and framework from several rounds: the median of the
    rounds' milliseconds, the largest memory figures, and the per-round minires / PyTorch
    ratios (each from two runs a few seconds apart, so a slow minute on a shared machine
    moves both)."""
    combined = {}
    for key in rounds[0]:
        combined[key] = {}
        for name, first in rounds[0][key].items():
            runs = [r[key][name] for r in rounds if "ms" in r[key].get(name, {})]
            if not runs:
                combined[key][name] = first
                continue
            out = dict(runs[0], ms=statistics.median(run["ms"] for run in runs), rounds_ms=[run["ms"] for run in runs])
            for field in ("peak_mib", "step_mib"):
                values = [run[field] for run in runs if run.get(field) is not None]
                out[field] = max(values) if values else None
            combined[key][name] = out
        paired = [r[key]["minires"]["ms"] / r[key]["torch"]["ms"] for r in rounds
                  if "ms" in r[key].get("minires", {}) and "ms" in r[key].get("torch", {})]
        combined[key]["ratios"] = paired
    return combined


def report(results, args):
    """The table, then growth with depth and per-image cost against batch."""
    several = args.rounds > 1
    print(f"{'depth':>5} {'batch':>5} {'mode':<5} {'minires ms':>11} {'torch ms':>9} {'ratio':>6} "
          + (f"{'(rounds)':>11} " if several else "")
          + f"{'mr img/s':>9} {'mr peak':>8} {'mr step':>8} {'pt peak':>8} {'pt step':>8}   (MiB)")
    for (depth, batch, mode), r in results.items():
        m, t = r.get("minires", {}), r.get("torch", {})
        paired = r.get("ratios", [])
        ratio = statistics.median(paired) if paired else None
        cells = [fmt(m.get("ms"), ".1f", 11), fmt(t.get("ms"), ".1f", 9), fmt(ratio, ".2f", 6)]
        if several:
            cells.append(f"{min(paired):.2f}-{max(paired):.2f}".rjust(11) if paired else "-".rjust(11))
        cells.append(fmt(batch / m["ms"] * 1000 if "ms" in m else None, ".0f", 9))
        for side in (m, t):
            cells += [fmt(side.get("peak_mib"), ".0f", 8), fmt(side.get("step_mib"), ".0f", 8)]
        print(f"{depth:>5} {batch:>5} {mode:<5} " + " ".join(cells))
        for name, side in (("minires", m), ("torch", t)):
            if "error" in side:
                print(f"      {name} not run: {side['error']}")
    # what the libraries said they ran (one line per framework: the runs agree unless a switch failed)
    for name in FRAMEWORKS:
        seen = sorted({r[name]["isa"] for r in results.values() if "isa" in r.get(name, {})})
        if seen:
            print(f"# isa {name}: " + " | ".join(seen))

    depths, batches = sorted(set(args.depths)), sorted(set(args.batches))
    if len(depths) > 1:
        macs = {d: forward_macs(d) for d in depths}
        lo = depths[0]
        print(f"\n# growth with depth: time(depth) / time({lo}) against multiply-adds(depth) / multiply-adds({lo})")
        for d in depths[1:]:
            for batch in batches:
                for mode in args.modes:
                    ratios = []
                    for name in FRAMEWORKS:
                        a, b = (results.get((k, batch, mode), {}).get(name, {}).get("ms") for k in (d, lo))
                        ratios.append(f"{name} {a / b:5.2f}x" if a and b else f"{name}     -")
                    print(f"{d:>4}/{lo:<4} batch {batch:>4} {mode:<5}  FLOPs {macs[d] / macs[lo]:4.2f}x   "
                          + "   ".join(ratios))
    if len(batches) > 1:
        ref = 128 if 128 in batches else batches[-1]
        print(f"\n# per-image cost against batch: ms per image, and relative to batch {ref}")
        for d in depths:
            for mode in args.modes:
                cells = []
                for name in FRAMEWORKS:
                    per = {b: results.get((d, b, mode), {}).get(name, {}).get("ms") for b in batches}
                    per = {b: v / b for b, v in per.items() if v}
                    cells.append(f"{name}: " + ", ".join(
                        f"{b} {v:.2f}" + (f" ({v / per[ref]:.2f})" if ref in per else "")
                        for b, v in per.items()))
                print(f"depth {d:>3} {mode:<5}  " + "   ".join(cells))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--depths", type=int_list, default=[20, 56, 110], help="e.g. 20,56,110")
    ap.add_argument("--batches", type=int_list, default=[32, 128, 256], help="e.g. 32,128,256")
    ap.add_argument("--modes", type=choice_list(MODES), default=list(MODES), help="train,eval")
    ap.add_argument("--frameworks", type=choice_list(FRAMEWORKS), default=list(FRAMEWORKS),
                    help="minires,torch")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=1,
                    help="run every configuration this many times, interleaved; report the medians")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=None, help="default: the cores this process may use")
    ap.add_argument("--no-fusion", action="store_true", help="minires with MINIRES_FUSION=0")
    ap.add_argument("--isa", choices=sorted(ISA_ENVIRONMENT), default=None,
                    help="hold both frameworks to this instruction set (default: what the CPU has)")
    ap.add_argument("--json", help="also write the results to this file")
    ap.add_argument("--child", choices=FRAMEWORKS, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.repeats < 1 or args.rounds < 1 or args.warmup < 0 or (args.threads is not None and args.threads < 1):
        ap.error("--repeats, --rounds and --threads must be >= 1, --warmup >= 0")
    bad = [d for d in args.depths if d < 8 or (d - 2) % 6]
    if bad:
        ap.error(f"--depths: a CIFAR ResNet's depth is 6n+2 (20, 56, 110, ...), got {bad[0]}")
    if args.threads is None:
        args.threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    if args.child:
        child(args)
        return
    print(header(args), flush=True)
    rounds, started = [], time.perf_counter()
    configs = [(d, b, m) for d in args.depths for b in args.batches for m in args.modes]
    for r in range(args.rounds):
        results = {}
        for k, (depth, batch, mode) in enumerate(configs, 1):
            results[(depth, batch, mode)] = {}
            for name in args.frameworks:
                print(f"  [round {r + 1}/{args.rounds}, {k}/{len(configs)}] {name} ResNet-{depth} batch {batch} "
                      f"{mode} ({time.perf_counter() - started:.0f} s so far)", file=sys.stderr, flush=True)
                results[(depth, batch, mode)][name] = run_config(name, depth, batch, mode, args)
        rounds.append(results)
    results = combine(rounds)
    report(results, args)
    if args.json:
        with open(args.json, "w") as f:
            json.dump([{"depth": d, "batch": b, "mode": m, **{n: r for n, r in v.items()}}
                       for (d, b, m), v in results.items()], f, indent=1)


if __name__ == "__main__":
    main()
