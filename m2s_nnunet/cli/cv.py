"""``m2s-nnunet cv DATASET``: the whole cross-validation study as SLURM jobs, or run on this machine
(``m2s_nnunet.cv``). Refusals are ``StudyError`` (a ``UserError``)."""

from __future__ import annotations

import argparse
import os
import sys

EPILOG = """\
examples:
  m2s-nnunet cv 501 --partition gpu --time 1440            # 2 trainers x 5 folds (x 2d, 3d_fullres) on SLURM
  m2s-nnunet cv 501 --status                              # done / queued / running / failed, with log paths
  m2s-nnunet cv 501 --executor local                      # the same grid here, one training at a time
  m2s-nnunet cv 501 --executor local --parallel 2 --local-gpus 0 1

Rerunning the command is safe: finished folds are skipped, queued or running ones left alone, interrupted
ones (timeout, preemption, scancel) resubmitted and resumed with --c.
"""


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    from m2s_nnunet.cv.grid import DEFAULT_TRAINERS

    p = subparsers.add_parser(
        "cv", help="run the cross-validation study (folds x configurations x trainers) as SLURM jobs or locally",
        description="Train every fold of every configuration for M2SNet and the nnU-Net baseline "
        "(nnUNetv2_train --npz, resumed with --c), then nnUNetv2_find_best_configuration and the paired "
        "comparison of `m2s-nnunet summarize`, as SLURM jobs (submitit) or on this machine.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dataset", help="dataset id or name (planned and preprocessed by nnU-Net already)")
    p.add_argument("-c", "--configurations", nargs="+", default=None,
                   help="default: 2d, plus 3d_fullres where the plans have it")
    p.add_argument("-tr", "--trainers", nargs="+", default=list(DEFAULT_TRAINERS),
                   help="default: %(default)s")
    p.add_argument("-f", "--folds", nargs="+", type=int, default=None,
                   help="default: every fold of the dataset's splits_final.json (0 1 2 3 4 where it has none yet)")
    p.add_argument("-p", "--plans", default="nnUNetPlans", help="plans identifier (default: %(default)s)")
    p.add_argument("--executor", choices=("slurm", "local"), default=None,
                   help="default: slurm where sbatch is on PATH, else local")
    p.add_argument("--status", action="store_true", help="show each job's state and the progress, submit nothing")
    p.add_argument("--dry-run", action="store_true", help="say what would be submitted or run, do nothing")
    p.add_argument("--device", choices=("cuda", "cpu"), default="cuda", help="nnUNetv2_train -device (default: cuda)")
    p.add_argument("--num-gpus", type=int, default=1, help="GPUs per training (nnU-Net DDP, -num_gpus); default 1")
    slurm = p.add_argument_group("SLURM")
    slurm.add_argument("--partition", default=None)
    slurm.add_argument("--gpus", type=int, default=1, help="GPUs per training job (default 1; --device cpu: none)")
    slurm.add_argument("--cpus", type=int, default=None, help="CPUs per training job")
    slurm.add_argument("--mem", default=None, help="memory per job, e.g. 64G")
    slurm.add_argument("--time", type=int, default=24 * 60, help="time limit per job in minutes (default 1440); "
                       "a job that reaches it is requeued and resumes")
    slurm.add_argument("--requeues", type=int, default=3, help="requeues on timeout/preemption (default 3)")
    slurm.add_argument("--sbatch", action="append", default=[], metavar="KEY=VALUE",
                       help="an extra '#SBATCH --KEY=VALUE' line (repeatable), e.g. --sbatch account=lab")
    local = p.add_argument_group("local executor")
    local.add_argument("--parallel", type=int, default=1, help="trainings at a time (default 1)")
    local.add_argument("--local-gpus", nargs="+", default=None, metavar="ID",
                       help="GPU ids to spread parallel trainings over (CUDA_VISIBLE_DEVICES)")
    return p


def extra_sbatch(items: list[str]) -> dict[str, str]:
    """``--sbatch KEY=VALUE`` items as a dict (a leading ``--`` of a key is dropped); StudyError otherwise."""
    from m2s_nnunet.cv.grid import StudyError

    extra = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip().removeprefix("--")
        if not sep or not key:
            raise StudyError(f"--sbatch '{item}': expected KEY=VALUE, e.g. --sbatch account=mylab")
        extra[key] = value.strip()
    return extra


def check_trainers_found(trainers: list[str], env: dict[str, str]) -> None:
    """Refuse a trainer name nnU-Net will not find (a typo would otherwise fail later, on the node), looked up
    as nnUNetv2_train does: nnU-Net's own trainers, then the folders of ``nnUNet_extTrainer`` in ``env``."""
    import contextlib
    import io

    from m2s_nnunet.cv.grid import StudyError

    previous = os.environ.get("nnUNet_extTrainer")
    os.environ["nnUNet_extTrainer"] = env.get("nnUNet_extTrainer", "")
    missing = []
    try:
        from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name

        for name in trainers:
            try:
                with contextlib.redirect_stdout(io.StringIO()):  # nnU-Net narrates its search
                    recursive_find_trainer_class_by_name(name)
            except RuntimeError:
                missing.append(name)
    finally:
        if previous is None:
            os.environ.pop("nnUNet_extTrainer", None)
        else:
            os.environ["nnUNet_extTrainer"] = previous
    if missing:
        from m2s_nnunet.training import __all__ as ours

        names = ", ".join(n for n in ours if n != "TRAINERS")
        raise StudyError(f"trainer(s) {missing} not found by nnU-Net (its own trainers and nnUNet_extTrainer="
                         f"{env.get('nnUNet_extTrainer', '')}): check the spelling; M2SNet trainers are {names}")


def build_study(args: argparse.Namespace):
    """The ``Study`` the options describe; StudyError when nnU-Net's folders or the dataset are not there."""
    from m2s_nnunet.cv.grid import (
        StudyError,
        available_configurations,
        check_folds_in_split,
        default_configurations,
        study_grid,
    )
    from m2s_nnunet.cv.study import Study
    from m2s_nnunet.nnunet_env import NNUNET_FOLDERS, with_ext_trainer
    from m2s_nnunet.splits import dataset_folds, split_fold_count

    missing = [name for name in NNUNET_FOLDERS if not os.environ.get(name)]
    if missing:
        raise StudyError(f"{', '.join(missing)} not set: run `eval \"$(m2s-nnunet env)\"` or export nnU-Net's folders")
    from nnunetv2.utilities.dataset_name_id_conversion import maybe_convert_to_dataset_name

    try:
        dataset = maybe_convert_to_dataset_name(args.dataset)
    except RuntimeError as err:
        raise StudyError(f"dataset '{args.dataset}': {err}") from err
    from pathlib import Path

    preprocessed = Path(os.environ["nnUNet_preprocessed"])
    available = available_configurations(preprocessed, dataset, args.plans)
    configurations = args.configurations or default_configurations(available)
    folds = args.folds if args.folds is not None else dataset_folds(dataset, preprocessed)
    check_folds_in_split(folds, split_fold_count(preprocessed, dataset), dataset)
    tasks = study_grid(dataset, configurations, args.trainers, folds, args.plans, available)
    env = with_ext_trainer({k: v for k, v in os.environ.items() if k.startswith("nnUNet") or k.startswith("M2S_")})
    check_trainers_found(args.trainers, env)
    env["PATH"] = os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")])
    return Study(dataset, tasks, configurations, args.trainers, folds, args.plans, env, args.device, args.num_gpus)


def run(args: argparse.Namespace) -> int:
    from m2s_nnunet.cv.grid import StudyError
    from m2s_nnunet.cv.study import SlurmOptions, format_status, run_local, slurm_available, submit

    study = build_study(args)
    if args.status:
        print(format_status(study))
        return 0
    executor = args.executor or ("slurm" if slurm_available() else "local")
    print(f"study {study.dataset}: {len(study.configurations)} configuration(s) x {len(study.trainers)} trainer(s) "
          f"x {len(study.folds)} fold(s) = {len(study.tasks)} trainings, executor {executor}", flush=True)
    if executor == "slurm":
        if not slurm_available():
            raise StudyError("--executor slurm: sbatch/squeue not found on PATH (use --executor local on a "
                             "machine without SLURM)")
        gpus = 0 if args.device == "cpu" else args.gpus
        options = SlurmOptions(args.partition, gpus, args.cpus, args.mem, args.time, extra_sbatch(args.sbatch),
                               args.requeues)
        for line in submit(study, options, dry_run=args.dry_run):
            print(line)
        print("follow it with: m2s-nnunet cv " + args.dataset + " --status")
        return 0
    if args.dry_run:
        todo = [t.key for t in study.tasks if not t.is_done(study.results)]
        print("\n".join(f"would train {k}" for k in todo) or "every fold is done")
        print("would then run find_best_configuration + summarize")
        return 0
    for line in run_local(study, args.parallel, args.local_gpus):
        print(line)
    return 0
