"""``convert``: check everything, then write the dataset in one go.

The order is the promise: options, output folder and leftovers of killed runs first; then pairing, the full scan
of every file, the label mapping and the splits; only when all of them pass is anything written.
"""

from __future__ import annotations

from pathlib import Path

from m2s_nnunet import staging
from m2s_nnunet.conversion.dataset import dataset_folder_name, refuse_replacing, resolve_raw_root, write_dataset
from m2s_nnunet.conversion.kind import KINDS
from m2s_nnunet.conversion.labels import decide_label_plan, empty_masks, rare_labels
from m2s_nnunet.conversion.options import ConversionError, ConvertOptions, check_options
from m2s_nnunet.conversion.pairing import Pair, pair_inputs, unsupported_files
from m2s_nnunet.conversion.report import ConversionReport, next_steps, size_range
from m2s_nnunet.conversion.splits import install_splits, make_splits, preprocessed_dir, read_case_list, stale_splits
from m2s_nnunet.errors import UserError
from m2s_nnunet.inputs import folders
from m2s_nnunet.inputs.endings import JPEG_ENDINGS, PICTURE_ENDINGS
from m2s_nnunet.naming import short_list


def convert(opts: ConvertOptions) -> ConversionReport:
    """Check everything, then build the dataset atomically; raise ConversionError on any refusal.

    Leftovers of interrupted runs are handled first (``staging.recover_leftovers``); what was done with them is in
    the report's warnings, and in the message of a refusal, which otherwise says that nothing was written.
    """
    check_options(opts)
    root = resolve_raw_root(opts.out)
    final = root / dataset_folder_name(opts.dataset_id, opts.name)
    try:
        folders.check_output_folder(root, "output folder (nnUNet_raw)")
    except UserError as err:
        raise ConversionError(str(err) + "\nNothing was written.") from err
    recovered = staging.recover_leftovers(final)
    try:
        return _convert_checked(opts, final, list(recovered))
    except UserError as err:
        if not recovered:
            raise
        raise ConversionError(
            f"{err}\nNote: before this refusal, leftovers of interrupted runs in {root} were handled:\n  "
            + "\n  ".join(recovered)
        ) from err


def _convert_checked(opts: ConvertOptions, final: Path, warn: list[str]) -> ConversionReport:
    """``convert`` after the output folder check and the recovery of interrupted runs (notes in ``warn``)."""
    refuse_replacing(final, opts)
    pairs, kind_name = pair_inputs(Path(opts.images), Path(opts.masks), opts.mask_suffix)
    kind = KINDS[kind_name]
    kind.refuse_options(opts)
    for folder in dict.fromkeys((Path(opts.images), Path(opts.masks))):
        skipped = unsupported_files(folder)
        if skipped:
            warn.append(f"{len(skipped)} file(s) in {folder} are neither pictures ({', '.join(PICTURE_ENDINGS)}) nor "
                        f"NIfTI volumes and were not converted: {short_list(skipped, 5)}")
    pairs, test_cases = _select_cases(pairs, opts, warn)
    scan = kind.scan(pairs, opts)
    jpeg_masks = [p.mask.name for p in pairs if p.mask.suffix.lower() in JPEG_ENDINGS]
    plan = decide_label_plan(scan.values, jpeg_masks, opts)
    if jpeg_masks and plan.threshold is not None:
        warn.append(f"{len(jpeg_masks)} JPEG mask(s) thresholded at 127 (lossy compression leaves values 1..254)")
    warn += scan.warnings(opts)
    warn += rare_labels(scan.values, plan)
    empty = empty_masks(scan.values, plan)
    if empty:
        warn.append(f"{len(empty)} case(s) have no foreground: {short_list(empty, 5)}")
    train = [p for p in pairs if p.case not in test_cases]
    test = [p for p in pairs if p.case in test_cases]
    if not train:
        raise ConversionError("no training cases left after --test-list")
    splits = make_splits([p.case for p in train], opts)
    stale = stale_splits(final.name, splits, [p.case for p in train])
    if stale and not opts.install_splits:
        raise ConversionError(
            f"{stale[0]} does not fit this conversion: {stale[1]}. nnUNetv2_plan_and_preprocess or "
            "nnUNetv2_train would stop on it (nothing was written).\nFix: re-run with --install-splits (the old "
            "file is kept as splits_final.json.bak), or delete that file."
        )

    write_dataset(final, kind, plan, scan.channels, train, test, splits, opts)
    sizes = size_range(scan.sizes)
    if opts.resize:
        sizes += f" (written as {opts.resize[0]}x{opts.resize[1]})"
    report = ConversionReport(final, kind.name, len(train), len(test), scan.channels, sizes, scan.values_found(),
                              plan, warn)
    installed = install_splits(final, splits is not None, stale is not None) if opts.install_splits else None
    report.next_steps = next_steps(final, opts.dataset_id, splits is not None, installed)
    if opts.overwrite and preprocessed_dir(final.name) is not None:
        report.warnings.append(
            f"{preprocessed_dir(final.name)} holds preprocessing of the previous version; "
            "re-run nnUNetv2_plan_and_preprocess"
        )
    return report


def _select_cases(pairs: list[Pair], opts: ConvertOptions, warn: list[str]) -> tuple[list[Pair], set[str]]:
    """The cases to convert (``--limit``) and the held-out ones among them (``--test-list``)."""
    if opts.limit is not None:
        pairs = pairs[: opts.limit]
        warn.append(f"--limit {opts.limit}: only the first {len(pairs)} cases (sorted by name) are converted")
    test_cases = set(read_case_list(opts.test_list)) if opts.test_list else set()
    missing = sorted(test_cases - {p.case for p in pairs})
    if missing and opts.limit is None:
        raise ConversionError(
            f"--test-list {opts.test_list} names {len(missing)} case(s) that are not in the input: "
            f"{short_list(missing)}"
        )
    if missing:
        warn.append(f"{len(missing)} --test-list case(s) fall outside --limit and are skipped")
    return pairs, test_cases
