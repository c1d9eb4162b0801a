"""Paths between two seeds: discretised NLL under the χ_d prior, norm deviation and time, for lerp, slerp and NAO.

usage: .host/venv/bin/python -m bench.interpolation [--frames 16] [--size 64]  (seeds of shape 4×size×size)
"""
import argparse
import math
import time

import torch

from tests.support.inprocess import import_pack


def main():
    import_pack()
    from seedfinder.solvers.interpolation import PATHS, interpolate, path_nll
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--size", type=int, default=64)
    args = parser.parse_args()
    generator = torch.Generator().manual_seed(0)
    shape = (1, 4, args.size, args.size)
    d = math.prod(shape)
    pairs = {"two Gaussian seeds": (torch.randn(shape, generator=generator), torch.randn(shape, generator=generator)),
             "norms 0.95·√d and 1.05·√d": (0.95 * torch.randn(shape, generator=generator),
                                           1.05 * torch.randn(shape, generator=generator))}
    print(f"{args.frames} frames between seeds of shape {tuple(shape[1:])} (d = {d}, √d = {math.sqrt(d):.1f}), "
          f"{torch.get_num_threads()} CPU threads\n")
    print("| seeds | method | path NLL | max abs(norm − √d) between the endpoints | time (s) |")
    print("|---|---|---|---|---|")
    for name, (a, b) in pairs.items():
        for method in PATHS:
            start = time.perf_counter()
            path = interpolate(a, b, args.frames, method)
            elapsed = time.perf_counter() - start
            deviation = float((path[1:-1].flatten(1).norm(dim=1) - math.sqrt(d)).abs().max())
            print(f"| {name} | {method} | {float(path_nll(path.double())):.1f} | {deviation:.2f} | {elapsed:.2f} |")


if __name__ == "__main__":
    main()
