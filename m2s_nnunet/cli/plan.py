"""``m2s-nnunet plan -d DATASET``: write M2SNetPlans.json next to nnU-Net's plans (``m2s_nnunet.planning``)."""

from __future__ import annotations

import argparse
import json


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    from m2s_nnunet.presets import builtin_presets
    from m2s_nnunet.settings import DEFAULT_ENCODER

    p = subparsers.add_parser("plan", help="write M2SNetPlans.json (patch and batch sizes for M2SNet, 2D and 3D)")
    p.add_argument("-d", "--dataset", required=True, help="dataset id or DatasetXXX_Name (already planned by nnU-Net)")
    p.add_argument("--preset", default=None,
                   help=f"apply a protocol on top of the dataset's fingerprint: {', '.join(builtin_presets())}, or "
                   "the path of your own preset .json (schema: plans/README.md)")
    p.add_argument("--gpu-memory-gb", type=float, default=None,
                   help="GPU memory target (default: the preset's, else 8 like nnU-Net)")
    p.add_argument("--encoder", default=None, help=f"timm encoder for 2d (default {DEFAULT_ENCODER}; 'plans' "
                   "for nnU-Net's residual encoder); 3D always uses the plans encoder")
    p.add_argument("--patch-size", type=int, nargs="+", default=None,
                   help="patch size for the configurations with that many axes (e.g. 352 352)")
    p.add_argument("--source-plans", default="nnUNetPlans")
    p.add_argument("--plans-name", default="M2SNetPlans")
    p.add_argument("--no-lossnet", action="store_true", help="size batches for training without LossNet")
    p.add_argument("--overwrite", action="store_true")
    return p


def run(args: argparse.Namespace) -> int:
    from m2s_nnunet.planning import plan_m2snet
    from m2s_nnunet.presets import load_preset
    from m2s_nnunet.settings import has_plans_entry, plans_overrides, plans_record

    path = plan_m2snet(args.dataset, gpu_memory_gb=args.gpu_memory_gb, encoder=args.encoder,
                       patch_size=args.patch_size, source_plans=args.source_plans, plans_name=args.plans_name,
                       lossnet=not args.no_lossnet, overwrite=args.overwrite, preset=args.preset)
    print(f"wrote {path}")
    for name, config in json.loads(path.read_text())["configurations"].items():
        if not has_plans_entry(config):
            print(f"  {name}: inherits from {config.get('inherits_from')}")
            continue
        memory, pinned = plans_record(config, "memory_model"), plans_overrides(config)
        shown = f" (pinned in the plans: {pinned})" if pinned else ""
        print(f"  {name}: patch {config['patch_size']}, batch {config['batch_size']}, sized for encoder "
              f"{memory['encoder']}{shown}, estimated {memory['estimated_gb']} GB of "
              f"{memory['gpu_memory_target_gb']:g} GB")
    preset = load_preset(args.preset) if args.preset else None
    trainer = (preset.trainer if preset else None) or "M2SNetTrainer"
    configuration = next(iter(preset.configurations)) if preset else "2d"
    print(f"  train: nnUNetv2_train {args.dataset} {configuration} 0 -tr {trainer} -p {args.plans_name}")
    if preset and preset.note:
        print(f"  note ({preset.name}): {preset.note}")
    return 0
