"""Where the host's time goes in a ResNet-20 training step (cProfile): on the GPU the step
is bound by Python and launch overhead, not by the device, so this is the profile to read.

    python benchmarks/host_overhead.py [--device cuda|cpu] [--batch 128] [--steps 20] [--top 30]

Prints the step time without the profiler, then the functions with the most time of
their own per step, and the calls per step into each CuPy / kernel-module entry point
(each one costs a launch or a few microseconds of bookkeeping).
"""
import argparse
import cProfile
import pstats
import time

from _timing import minires_resnet20_step


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda", choices=["cpu", "cuda"])
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--top", type=int, default=30)
    args = ap.parse_args()
    step, sync = minires_resnet20_step(args.device, args.batch)

    for _ in range(5):
        step()
    sync()
    t0 = time.perf_counter()
    for _ in range(args.steps):
        step()
    sync()
    wall = (time.perf_counter() - t0) / args.steps * 1000
    profile = cProfile.Profile()
    profile.enable()
    for _ in range(args.steps):
        step()
    sync()
    profile.disable()
    stats = pstats.Stats(profile)
    total = stats.total_tt / args.steps * 1000
    print(f"# ResNet-20 step, batch {args.batch}, {args.device}: {wall:.1f} ms without the profiler, "
          f"{total:.1f} ms host time under it")
    rows = sorted(stats.stats.items(), key=lambda kv: -kv[1][2])        # by own time
    print(f"{'own ms/step':>12}{'calls/step':>11}  function")
    for (path, line, name), (_, ncalls, tottime, _cum, _) in rows[:args.top]:
        where = path.split("site-packages/")[-1].split("/work/")[-1]
        print(f"{tottime / args.steps * 1000:12.3f}{ncalls / args.steps:11.1f}  {name}  ({where}:{line})")


if __name__ == "__main__":
    main()
