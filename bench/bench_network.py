"""How fast is M2SNet itself? Forward and forward+backward time per image, and what the fast fixed filters buy.

Three tables:

1. per encoder and input size: parameters, GMACs, forward (inference) and forward+backward (training) time
   per image, and the same forward+backward with the fixed all-ones filters run as plain dense convolutions
   (``fast_filters=False``) to show the whole-network speed-up of the channel-sum box-filter path;
2. the fixed filters alone (``FixedAllOnesFilter`` k=3, k=5 and the shared ``MultiScaleFilters`` pair) on
   realistic tensors: 64 channels at stride 4 and 8 of a 352x352 input (88x88 and 44x44);
3. optionally (``--lossnet``) LossNet's VGG16 forward+backward per image, with *random* VGG weights: the
   cost does not depend on the weights, so this is a timing, not the paper's loss.

The fast/plain pairs run interleaved on the same weights (the flag is toggled in place). Example:

    python bench/bench_network.py --device cpu --lossnet --out bench/out/network.md
"""

from __future__ import annotations

import argparse
from functools import partial
from pathlib import Path

import torch
from benchlib import (
    count_flops,
    describe_device,
    markdown_table,
    median,
    pick_device,
    precision_context,
    time_interleaved,
    write_report,
)

from m2s_nnunet.complexity import count_parameters
from m2s_nnunet.losses import LossNet
from m2s_nnunet.network import M2SNet
from m2s_nnunet.network.blocks import FixedAllOnesFilter, MultiScaleFilters

DEFAULT_ENCODERS = ("res2net50d", "resnet18")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", choices=("cpu", "cuda"), default=None, help="default: cuda if available, else cpu")
    p.add_argument("--encoders", nargs="+", default=list(DEFAULT_ENCODERS), help="timm encoders (default: %(default)s)")
    p.add_argument("--sizes", nargs="+", type=int, default=[128, 352], help="square input sides (default: %(default)s)")
    p.add_argument("--batch", type=int, default=None, help="images per call (default: 2 on CPU, 16 on CUDA)")
    p.add_argument("--classes", type=int, default=2, help="output channels (2 = binary task as nnU-Net builds it)")
    p.add_argument("--in-channels", type=int, default=3)
    p.add_argument("--warmup", type=int, default=2, help="untimed calls before measuring (default: %(default)s)")
    p.add_argument("--repeats", type=int, default=5, help="timed calls; the median is reported (default: %(default)s)")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's default)")
    p.add_argument("--amp", action="store_true", help="autocast fp16 on CUDA (as nnU-Net trains); ignored on CPU")
    p.add_argument("--filter-base", type=int, default=352,
                   help="input side whose stride-4/8 maps size the filter benchmark (default: %(default)s -> 88, 44)")
    p.add_argument("--filter-channels", type=int, default=64, help="channels of the filter benchmark tensors")
    p.add_argument("--skip-plain", action="store_true", help="skip the whole network with fast_filters=False")
    p.add_argument("--skip-filters", action="store_true", help="skip the fixed-filter micro-benchmark")
    p.add_argument("--lossnet", action="store_true", help="also time LossNet (random VGG16 weights: timing only)")
    p.add_argument("--out", type=Path, default=None, help="also write the Markdown tables here")
    p.add_argument("--json", type=Path, default=None, help="write all raw samples here")
    return p.parse_args(argv)


def set_fast_filters(model, enabled: bool) -> None:
    """Toggle the fixed filters' fast path in place (same weights, so timings compare like with like)."""
    for module in model.modules():
        if isinstance(module, FixedAllOnesFilter):
            module.fast_path = enabled


def _forward(model, x, device, amp: bool) -> None:
    model.eval()
    with torch.inference_mode(), precision_context(device, amp):
        model(x)


def _train_step(model, x, device, amp: bool, fast: bool) -> None:
    set_fast_filters(model, fast)
    model.train()
    model.zero_grad(set_to_none=True)
    with precision_context(device, amp):
        out = model(x)
    out.float().square().mean().backward()


def bench_networks(args: argparse.Namespace, device, batch: int) -> tuple[list[list[object]], list[dict]]:
    rows, raw = [], []
    for encoder in args.encoders:
        model = M2SNet(args.in_channels, args.classes, encoder=encoder, fast_filters=True).to(device)
        params = count_parameters(model)["total"] / 1e6
        for size in args.sizes:
            x = torch.randn(batch, args.in_channels, size, size, device=device)
            model.eval()
            with torch.no_grad():
                macs = count_flops(partial(model, x[:1])) / 2 / 1e9
            fns = {"forward": partial(_forward, model, x, device, args.amp),
                   "train_fast": partial(_train_step, model, x, device, args.amp, True)}
            if not args.skip_plain:
                fns["train_plain"] = partial(_train_step, model, x, device, args.amp, False)
            samples = time_interleaved(fns, device, args.warmup, args.repeats)
            set_fast_filters(model, True)
            per_img = {k: median(v) / batch * 1e3 for k, v in samples.items()}
            plain = per_img.get("train_plain")
            speedup = plain / per_img["train_fast"] if plain else None
            rows.append([encoder, f"{size}x{size}", batch, params, macs, per_img["forward"], per_img["train_fast"],
                         plain, speedup])
            raw.append({"encoder": encoder, "size": size, "batch": batch, "params_m": params, "gmacs_per_image": macs,
                        "ms_per_image": per_img, "samples_s": samples})
        del model
    return rows, raw


def _filters_call(module, x, device, amp: bool, fast: bool, backward: bool) -> None:
    """One filter, or both of ``MultiScaleFilters`` as a subtraction unit calls them (one shared channel sum)."""
    both = isinstance(module, MultiScaleFilters)
    for f in (module.f3, module.f5) if both else (module,):
        f.fast_path = fast
    with torch.set_grad_enabled(backward), precision_context(device, amp):
        out = sum(module.responses(x)) if both else module(x)
    if backward:
        x.grad = None
        out.float().sum().backward()


def bench_filters(args: argparse.Namespace, device, batch: int) -> tuple[list[list[object]], list[dict]]:
    c = args.filter_channels
    rows, raw = [], []
    for stride in (4, 8):
        side = max(1, args.filter_base // stride)
        x = torch.randn(batch, c, side, side, device=device, requires_grad=True)
        modules = {
            "FixedAllOnesFilter k=3": FixedAllOnesFilter(c, 3).to(device),
            "FixedAllOnesFilter k=5": FixedAllOnesFilter(c, 5).to(device),
            "MultiScaleFilters (f3 + f5)": MultiScaleFilters(c).to(device),
        }
        for name, module in modules.items():
            call = partial(_filters_call, module, x, device, args.amp)
            fns = {"fwd_fast": partial(call, True, False), "fwd_plain": partial(call, False, False),
                   "bwd_fast": partial(call, True, True), "bwd_plain": partial(call, False, True)}
            samples = time_interleaved(fns, device, args.warmup, args.repeats)
            ms = {k: median(v) * 1e3 for k, v in samples.items()}
            rows.append([name, f"{batch}x{c}x{side}x{side}", ms["fwd_fast"], ms["fwd_plain"],
                         ms["fwd_plain"] / ms["fwd_fast"], ms["bwd_fast"], ms["bwd_plain"],
                         ms["bwd_plain"] / ms["bwd_fast"]])
            raw.append({"module": name, "shape": [batch, c, side, side], "ms": ms, "samples_s": samples})
    return rows, raw


def _lossnet_call(lossnet, logits, target, device, amp: bool, backward: bool) -> None:
    logits.grad = None
    with torch.set_grad_enabled(backward), precision_context(device, amp):
        loss = lossnet(torch.sigmoid(logits), target)
    if backward:
        loss.backward()


def bench_lossnet(args: argparse.Namespace, device, batch: int) -> tuple[list[list[object]], list[dict]]:
    lossnet = LossNet(pretrained=False).to(device)  # random VGG16: same cost as the real one
    foreground = max(1, args.classes - 1)
    rows, raw = [], []
    for size in args.sizes:
        logits = torch.randn(batch, foreground, size, size, device=device, requires_grad=True)
        target = (torch.rand(batch, foreground, size, size, device=device) > 0.5).float()
        fns = {"fwd": partial(_lossnet_call, lossnet, logits, target, device, args.amp, False),
               "fwd_bwd": partial(_lossnet_call, lossnet, logits, target, device, args.amp, True)}
        samples = time_interleaved(fns, device, args.warmup, args.repeats)
        ms = {k: median(v) / batch * 1e3 for k, v in samples.items()}
        rows.append([f"{batch}x{foreground}x{size}x{size} -> 224x224", ms["fwd"], ms["fwd_bwd"]])
        raw.append({"size": size, "batch": batch, "ms_per_image": ms, "samples_s": samples})
    return rows, raw


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    batch = args.batch or (16 if device.type == "cuda" else 2)
    torch.manual_seed(0)
    precision = "fp16 autocast" if args.amp and device.type == "cuda" else "fp32"
    md = [
        "# M2SNet network benchmark",
        "",
        f"- device: {describe_device(device)}",
        f"- precision: {precision}; warm-up {args.warmup}, median of {args.repeats} interleaved repeats",
        "- forward: eval mode, inference_mode; forward+backward: train mode, backward of a mean-square of the "
        "logits (no loss network, no optimizer step)",
        "",
        "## Whole network (time per image)",
        "",
    ]
    data: dict = {"device": describe_device(device), "precision": precision, "batch": batch, "args": vars(args)}
    rows, data["networks"] = bench_networks(args, device, batch)
    md.append(markdown_table(
        ["encoder", "input", "batch", "params (M)", "GMACs/img", "fwd ms/img", "fwd+bwd ms/img",
         "fwd+bwd plain filters ms/img", "fast-filter speed-up"], rows))
    md += ["", "GMACs: multiply-accumulates of convolutions and matrix products of one forward pass with the fast "
           "filters (PyTorch FlopCounterMode / 2); 'plain filters' runs the fixed all-ones filters as dense "
           "64x64xk x k convolutions (fast_filters=False), same weights, interleaved."]
    if not args.skip_filters:
        rows, data["filters"] = bench_filters(args, device, batch)
        md += ["", f"## Fixed all-ones filters alone (stride 4 and 8 of {args.filter_base}x{args.filter_base}, "
               "whole batch, BN + ReLU included)", ""]
        md.append(markdown_table(
            ["module", "tensor", "fwd fast ms", "fwd plain ms", "fwd speed-up", "fwd+bwd fast ms",
             "fwd+bwd plain ms", "fwd+bwd speed-up"], rows, digits=3))
    if args.lossnet:
        rows, data["lossnet"] = bench_lossnet(args, device, batch)
        md += ["", "## LossNet (VGG16 to relu4_3 on prediction and target, time per image)", ""]
        md.append(markdown_table(["maps", "fwd ms/img", "fwd+bwd ms/img"], rows))
        md += ["", "Random VGG16 weights (LossNet(pretrained=False)): a timing only, the cost does not depend on the "
               "weights. fwd+bwd = both feature passes plus the backward through the prediction branch."]
    write_report("\n".join(md), data, args.out, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
