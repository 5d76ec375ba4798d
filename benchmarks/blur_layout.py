"""Which way of running the FIR blur after an up-sampling conv is fastest (forward + backward)?

    python benchmarks/blur_layout.py [--device cuda] [--batches 1,8] [--repeats 20]

On an H200 a 1024-px projection step at batch 8 spent about 30% of its GPU time in cuDNN's grouped
direct kernel and its data-gradient kernel: the depthwise 4x4 blur (`stylegan2.upfirdn2d`) on the
channels-last tensors that the non-fused modulated conv produced. This times, for the shapes of a
config-f generator (channels 256/128/64/32 at 128/256/512/1024 px, the transposed conv's 2h+1
output), the blur on channels-last input (stylelift's CPU path), on a contiguous NCHW copy, and as
two 1-D depthwise passes (the filter is separable), and checks that all three agree.

Measured (forward + backward, batch 8, 128 -> 1024 px): H200: channels-last 4.4/8.4/16.5/33.2 ms,
NCHW 2.0/3.8/7.4/16.9, two passes 3.9/8.0/25.2/46.7 (differences up to 2e-3 there: cuDNN's TF32);
2-core CPU: channels-last 137/325/530/1345 ms, NCHW 214/685/1685/2832, two passes 175/350/638/1594.
So stylelift's modulated conv stays channels-last on the CPU and NCHW on a GPU (end to end, a
1024-px batch-8 step on the H200 went from 0.148 to 0.108 s, on one machine start).
"""

from __future__ import annotations

import stylelift  # noqa: F401  (first, before torch: it sets the CPU thread settings torch reads when it loads)

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from stylelift.models.stylegan2 import fir_filter_2d, upfirdn2d

TAPS = (1, 3, 3, 1)
SHAPES = ((128, 256), (256, 128), (512, 64), (1024, 32))  # (resolution, channels) of config-f at 1024 px


def blur_separable(x: torch.Tensor, taps=TAPS, gain: float = 4.0) -> torch.Tensor:
    """upfirdn2d(x, fir_filter_2d(taps), pad=(1, 1, 1, 1), gain=gain) as a vertical then a horizontal pass."""
    c = x.shape[1]
    f = torch.as_tensor(taps, dtype=x.dtype, device=x.device).flip(0)
    f = f / f.sum() * gain**0.5
    x = F.pad(x, [1, 1, 1, 1])
    x = F.conv2d(x, f.reshape(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c)
    return F.conv2d(x, f.reshape(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c)


def variants(f2d: torch.Tensor):
    return {
        "channels-last (CPU)": lambda x: upfirdn2d(x, f2d, pad=(1, 1, 1, 1), gain=4),
        "NCHW copy": lambda x: upfirdn2d(x.contiguous(), f2d, pad=(1, 1, 1, 1), gain=4),
        "two 1-D passes": lambda x: blur_separable(x),
    }


def seconds(fn, x: torch.Tensor, grad: torch.Tensor, repeats: int, device: torch.device) -> float:
    times = []
    for _ in range(repeats + 3):
        x.grad = None
        if device.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        fn(x).backward(grad)
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    return statistics.median(times[3:])


def layer_benchmark_args(doc: str, repeats: int) -> tuple[argparse.Namespace, torch.device, str]:
    """--device, --batches, --repeats of the per-layer benchmarks; (args, device, device name), with
    cuDNN's autotuning on as during a projection."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--batches", default="1,8")
    ap.add_argument("--repeats", type=int, default=repeats)
    args = ap.parse_args()
    device = torch.device(args.device)
    torch.backends.cudnn.benchmark = device.type == "cuda"
    return args, device, torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"


def main() -> None:
    args, device, name = layer_benchmark_args(__doc__, repeats=20)
    f2d = fir_filter_2d(TAPS).to(device)
    print(f"FIR blur after the up-sampling conv, forward + backward, ms (median of {args.repeats}), {name}")
    fns = variants(f2d)
    print(f"{'batch':>5} {'px':>5} {'ch':>4} " + " ".join(f"{k:>20}" for k in fns) + f" {'max |diff|':>11}")
    for n in (int(b) for b in args.batches.split(",")):
        for res, ch in SHAPES:
            torch.manual_seed(0)
            x = torch.randn(n, ch, res + 1, res + 1, device=device).contiguous(memory_format=torch.channels_last).requires_grad_()
            grad = torch.randn(n, ch, res, res, device=device)
            with torch.no_grad():
                outs = [fn(x) for fn in fns.values()]
            diff = max((o - outs[0]).abs().max().item() for o in outs[1:])
            ms = [1000 * seconds(fn, x, grad, args.repeats, device) for fn in fns.values()]
            print(f"{n:>5} {res:>5} {ch:>4} " + " ".join(f"{m:>20.3f}" for m in ms) + f" {diff:>11.1e}")


if __name__ == "__main__":
    main()
