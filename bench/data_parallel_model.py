#!/usr/bin/env python3
"""A model on paper of data-parallel train-vae on p processes (issue 16, BENCHMARKS.md "Data-parallel training").

Each step all-reduces the gradients (4 bytes per parameter). A ring all-reduce of M bytes over p processes takes
    T(p) = 2 (p - 1) / p * M / bandwidth + 2 (p - 1) * latency,
the step's compute on a process with b images is b * t_img (measured, bench/data_parallel.sh: one thread, this
machine's CPU; 256×3: 16.9 and 17.7 ms per image at b = 8 and 32, 1024×3: 221 and 204). Communication stays
under 10% of a step when b * t_img >= 9 T(p). Threads divide t_img (about 1/k on k threads, an upper bound on the speed-up).

Usage: python3 bench/data_parallel_model.py   (prints the markdown tables)
"""

import math

# parameters (train-vae at D = 64, zdim 8, 3 hidden layers in encoder and decoder) and measured ms per image
NETWORKS = {"256×3": (1_272_626, 17.5), "1024×3": (9_808_178, 212.0)}
LINKS = {"10 Gb/s Ethernet": (10e9 / 8, 20e-6), "100 Gb/s InfiniBand": (100e9 / 8, 3e-6)}
RANKS = [8, 16, 32, 64]
THREADS = [1, 16]


def allreduce_s(params, p, bandwidth, latency):
    m = 4 * params
    return 2 * (p - 1) / p * m / bandwidth + 2 * (p - 1) * latency


def main():
    print("| network | MB per step | link | " + " | ".join(f"all-reduce ms, p = {p}" for p in RANKS) + " |")
    print("|---|---|---|" + "---|" * len(RANKS))
    for net, (params, _) in NETWORKS.items():
        for link, (bw, lat) in LINKS.items():
            cells = " | ".join(f"{1e3 * allreduce_s(params, p, bw, lat):.1f}" for p in RANKS)
            print(f"| {net} | {4 * params / 1e6:.1f} | {link} | {cells} |")
    print()
    print("| network | link | threads per process | " + " | ".join(f"images per process, p = {p}" for p in RANKS) + " |")
    print("|---|---|---|" + "---|" * len(RANKS))
    for net, (params, t_img_ms) in NETWORKS.items():
        for link, (bw, lat) in LINKS.items():
            for k in THREADS:
                t_img = t_img_ms / 1e3 / k
                cells = " | ".join(str(max(1, math.ceil(9 * allreduce_s(params, p, bw, lat) / t_img))) for p in RANKS)
                print(f"| {net} | {link} | {k} | {cells} |")


if __name__ == "__main__":
    main()
