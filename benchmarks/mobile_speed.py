"""Speed of the torch MobileStyleGAN on the CPU, next to OpenVINO's forward time in the same run.

    python benchmarks/mobile_speed.py [--repeats 5] [--batches 1 4] [--threads N]

Times the synthesis network (ws -> image) at 1024 px and at out_res=512 (the LL sub-band), batch 1
and 4: forward without gradients, and forward + backward to ws (what a projector step costs;
the weights are frozen). Each time is the median of `--repeats` runs after one warm-up run. When
the `openvino` package is installed, the IR files are run there too (fp32, same threads), at the
same batch sizes, taking turns with the torch runs. The load average before and after is printed:
other processes on the machine slow every number, so compare numbers within one run only.

Two settings of the environment, read when torch starts, change these numbers a lot on a machine
shared with other work, and are printed with the results:
- `OMP_WAIT_POLICY=PASSIVE`: idle OpenMP threads sleep instead of spinning. With the default,
  torch's threads spin between parallel sections and fight other processes (and each other) for
  the cores; measured here on a busy 2-core machine: 3x faster forward, 3.5x faster backward.
- `THP_MEM_ALLOC_ENABLE=1`: torch backs large tensors with huge pages, so first touching a fresh
  64 MiB activation costs ~500 page faults instead of ~16,000.

Needs the random-face wheel: pip install --no-deps random-face==2021.7.21.1
"""

from __future__ import annotations

import stylelift  # noqa: F401  (first, before torch: it sets the CPU thread settings torch reads when it loads)

import argparse
import os
import statistics
import sys
import time

import numpy as np
import torch

from stylelift.models.mobilestylegan_wheel import load_mobilestylegan, wheel_files


def median_ms(fns: dict, repeats: int) -> dict:
    """Median wall time of each function in ms, the functions taking turns (so that a change in the
    machine's load hits all of them alike); one warm-up call each first."""
    for fn in fns.values():
        fn()  # warm-up: first-call allocations, oneDNN kernel selection, compilation
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {name: 1000 * statistics.median(t) for name, t in times.items()}


def torch_steps(G, batch: int, out_res, seed: int = 0) -> tuple:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        ws = G.mapping(torch.randn([batch, G.z_dim], generator=gen), truncation_psi=0.7)

    def forward():
        with torch.no_grad():
            G.synthesis(ws, out_res=out_res)

    def forward_backward():
        w = ws.clone().requires_grad_(True)
        G.synthesis(w, out_res=out_res).square().mean().backward()

    return forward, forward_backward


def openvino_step(batch: int, threads: int):
    """OpenVINO's forward of the synthesis IR (fp32), or None when openvino is not installed."""
    try:
        import openvino as ov
    except ImportError:
        return None
    core = ov.Core()
    model = core.read_model(str(wheel_files()["SynthesisNetwork.xml"]))
    if batch != 1:
        model.reshape({model.inputs[0].get_any_name(): [batch, 512]})
    compiled = core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": threads})
    request = compiled.create_infer_request()
    w = np.random.RandomState(0).randn(batch, 512).astype(np.float32)
    return lambda: request.infer({0: w})


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 4])
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--no-backward", action="store_true")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()[0]
    G = load_mobilestylegan()
    variants = [("torch", G)]
    rows = []
    for batch in args.batches:
        ov = openvino_step(batch, args.threads)
        for name, net in variants:
            for out_res in (None, G.img_resolution // 2):
                forward, forward_backward = torch_steps(net, batch, out_res)
                fns = {"forward": forward}
                if not args.no_backward:
                    fns["forward+backward"] = forward_backward
                if ov is not None:
                    fns["openvino"] = ov
                ms = median_ms(fns, args.repeats)
                fwd, fwd_bwd, ov_ms = ms["forward"], ms.get("forward+backward", float("nan")), ms.get("openvino")
                rows.append((name, out_res or G.img_resolution, batch, fwd, fwd_bwd, ov_ms))
                print(f"{name:14s} {out_res or G.img_resolution:5d}px batch {batch}: forward {fwd:7.0f} ms, "
                      f"forward+backward {fwd_bwd:7.0f} ms" + (f", OpenVINO {ov_ms:7.0f} ms" if ov_ms else ""), file=sys.stderr)
    load_after = os.getloadavg()[0]
    print(f"\nCPU, {args.threads} threads, torch {torch.__version__}, median of {args.repeats}; "
          f"load average {load_before:.1f} before, {load_after:.1f} after (cores: {os.cpu_count()}); "
          f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}, "
          f"THP_MEM_ALLOC_ENABLE={os.environ.get('THP_MEM_ALLOC_ENABLE', 'unset')}\n")
    print("| net | output | batch | forward ms | forward+backward ms | OpenVINO fp32 forward ms (1024) | torch forward / OpenVINO |")
    print("|---|---|---|---|---|---|---|")
    for name, res, batch, fwd, fwd_bwd, ov_ms in rows:
        ov = f"{ov_ms:.0f}" if ov_ms is not None else "not installed"
        ratio = f"{fwd / ov_ms:.2f}" if ov_ms is not None else "-"
        print(f"| {name} | {res} | {batch} | {fwd:.0f} | {fwd_bwd:.0f} | {ov} | {ratio} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
