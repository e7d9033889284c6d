#!/usr/bin/env python3
"""Peak memory of one PyTorch training step on each `train` case of sizes.json, to set beside
the bench runner's `mem MiB` column (our peak heap bytes of one training step, everything it
allocates included: packed weights, reserve, workspace, outputs, gradients).

PyTorch's CPU tensors come straight from malloc, so the step's peak is measured as the growth
of the process's resident high-water mark (VmHWM, reset through /proc/self/clear_refs) over
its resident size before the step: everything the step allocates and touches, outputs,
saved activations, oneDNN's workspace and the gradients included; the model and the input
are made before. Each case runs in a fresh process on 1 thread (the step is built as
../shared/bench/bench_torch.py builds it).

    /tmp/bench-venv/bin/python benches/torch_peak_memory.py [--sizes ../shared/bench/sizes.json]
"""
import argparse
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_SIZES = os.path.join(HERE, "..", "..", "shared", "bench", "sizes.json")


def status_kib(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def worker(case):
    import torch

    torch.set_num_threads(1)
    torch.manual_seed(0)
    I, H, B, T = case["input"], case["hidden"], case["batch"], case["steps"]
    make = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU}.get(case["cell"])
    m = make(I, H) if make else torch.nn.RNN(I, H, nonlinearity="tanh")
    x = torch.randn(T, B, I).requires_grad_(True)
    h0 = (torch.rand(1, B, H) * 2 - 1).requires_grad_(True)
    hx = (h0, (torch.rand(1, B, H) * 2 - 1).requires_grad_(True)) if case["cell"] == "lstm" else h0
    R = torch.randn(T, B, H)
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # resets VmHWM to the current resident size
    before = status_kib("VmRSS")
    out, _ = m(x, hx)
    (out * R).sum().backward()
    peak = status_kib("VmHWM")
    print(json.dumps({"case": case["name"], "peak_mib": (peak - before) / 1024}))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default=DEFAULT_SIZES)
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(json.loads(args.worker))
        return
    cases = [c for c in json.load(open(args.sizes))["cases"] if c["mode"] == "train"]
    print(f"{'case':<22} {'torch peak MiB':>15}")
    for case in cases:
        env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
        out = subprocess.run([sys.executable, __file__, "--worker", json.dumps(case)],
                             capture_output=True, text=True, env=env, check=True)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"{r['case']:<22} {r['peak_mib']:>15.1f}")


if __name__ == "__main__":
    main()
