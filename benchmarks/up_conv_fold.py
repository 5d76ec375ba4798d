"""The up-sampling conv as a 3x3 transposed conv + FIR filter pass, or as one transposed conv with
the filter folded into a 6x6 kernel (forward + backward into the input, as while projecting).

    python benchmarks/up_conv_fold.py [--device cuda] [--batches 1,8] [--repeats 10]

Shapes: the up-sampling convs of a config-f generator at 1024 px (input channels -> output
channels at each output resolution), on the memory layout `conv_layout` gives the device. Prints
milliseconds per forward + backward for both, and their largest relative difference.

Measured (batch 8) with a first version of this script, which took means of 10 runs where this takes
medians: H200 (NCHW, TF32): 8 px
0.96 -> 0.52 ms, 64 px 1.18 -> 1.23, 128 px 2.24 -> 2.46, 256 px 4.00 -> 2.77, 512 px 7.54 -> 3.65,
1024 px 14.98 -> 6.07 (relative difference 3e-4: TF32).
2-core CPU (channels-last, batch 1): 8 px 2.2 -> 22 ms, 64 px 54 -> 203, 1024 px 227 -> 411.
So `fold_up_filter` folds on a GPU and not on the CPU (end to end, a 1024-px batch-8 step on the
H200 went from 0.108 to 0.092 s, on one machine start).
"""

from __future__ import annotations

import stylelift  # noqa: F401  (first, before torch: it sets the CPU thread settings torch reads when it loads)

import torch
from blur_layout import layer_benchmark_args, seconds  # run as a script: benchmarks/ is on sys.path

from stylelift.models.stylegan2 import conv_layout, conv_up2, conv_up2_folded, fir_filter_2d, fold_filter_into_up_kernel

SHAPES = ((8, 512, 512), (64, 512, 512), (128, 512, 256), (256, 256, 128), (512, 128, 64), (1024, 64, 32))  # (output px, in, out)


def laid_for_conv_transpose(weight: torch.Tensor, layout: torch.memory_format) -> torch.Tensor:
    """The weight laid out so that the transpose conv_transpose2d convolves with is in `layout`."""
    return weight.transpose(0, 1).contiguous(memory_format=layout).transpose(0, 1)


def main() -> None:
    args, device, name = layer_benchmark_args(__doc__, repeats=10)
    layout = conv_layout(device)
    f = fir_filter_2d((1, 3, 3, 1)).to(device)
    print(f"up-sampling conv, forward + backward, ms (median of {args.repeats}), {name}, {layout}")
    print(f"{'batch':>5} {'px':>5} {'in->out':>9} {'conv + filter':>14} {'folded':>8} {'rel. diff':>10}")
    for n in (int(b) for b in args.batches.split(",")):
        for res, cin, cout in SHAPES:
            torch.manual_seed(0)
            weight = torch.randn(cout, cin, 3, 3, device=device)
            plain = laid_for_conv_transpose(weight, layout)
            folded = laid_for_conv_transpose(fold_filter_into_up_kernel(weight, f), layout)
            x = torch.randn(n, cin, res // 2, res // 2, device=device).contiguous(memory_format=layout).requires_grad_()
            grad = torch.randn(n, cout, res, res, device=device)
            fns = (lambda x, w=plain: conv_up2(x, w, f), lambda x, k=folded: conv_up2_folded(x, k))
            with torch.no_grad():
                ref, out = (fn(x) for fn in fns)
            diff = ((out - ref).abs().max() / ref.abs().max()).item()
            ms = [1000 * seconds(fn, x, grad, args.repeats, device) for fn in fns]
            print(f"{n:>5} {res:>5} {f'{cin}->{cout}':>9} {ms[0]:>14.2f} {ms[1]:>8.2f} {diff:>10.1e}")


if __name__ == "__main__":
    main()
