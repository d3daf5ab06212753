"""Check the input images' channel count before ``nnUNetv2_predict`` preprocesses them.

nnU-Net normalises each channel with the scheme of the training data; an image with one channel more (an RGBA
PNG given to an RGB model) dies there with ``IndexError: list index out of range``, in a worker process, before
M2SNet's own channel check can say what is wrong. ``nnUNetPredictor._manage_input_and_output_lists`` is where
nnU-Net turns ``-i`` into per-case file lists, in the main process: the check runs right after it, reading only
file headers, and only for M2SNet models.
"""

from __future__ import annotations

from pathlib import Path

from m2s_nnunet.errors import UserError
from m2s_nnunet.naming import short_list

_installed = False


class InputChannelsError(UserError, ValueError):
    """Input images whose channel count differs from the training data's."""


def file_channels(path: str, natural_image: bool) -> int | None:
    """Channels nnU-Net's reader will give for one file (None: cannot tell from the header; nnU-Net decides)."""
    try:
        if natural_image:
            from PIL import Image

            with Image.open(path) as im:
                if im.mode == "P":  # read as RGB, or RGBA when the palette has transparency
                    return 4 if "transparency" in im.info else 3
                return len(im.getbands())
        import SimpleITK as sitk

        reader = sitk.ImageFileReader()
        reader.SetFileName(str(path))
        reader.ReadImageInformation()
        return int(reader.GetNumberOfComponents())
    except Exception:  # noqa: BLE001 - unreadable files are reported by nnU-Net's reader itself
        return None


def check_case_channels(cases: list[list[str]], expected: int, network_channels: int, natural_image: bool,
                        spatial: str = "H, W") -> None:
    """Raise InputChannelsError listing the cases whose files do not add up to ``expected`` channels."""
    wrong = []
    for files in cases:
        counts = [file_channels(f, natural_image) for f in files]
        if None in counts:
            continue
        if sum(counts) != expected:
            detail = ", ".join(f"{Path(f).name}: {c}" for f, c in zip(files, counts, strict=True))
            wrong.append(f"{detail} (total {sum(counts)})")
    if wrong:
        raise InputChannelsError(
            f"M2SNet was built for (B, {network_channels}, {spatial}) inputs, but {len(wrong)} input case(s) have "
            f"another channel count than the {expected} of the training data: {short_list(wrong, 10)}. With "
            "nnU-Net this means the images have a different channel count than the training data (e.g. grey vs "
            "RGB PNGs, RGBA PNGs, or a missing/extra _000X channel file)",
            fix=f"convert them to {expected} channel(s) (e.g. PIL .convert('RGB') for RGBA PNGs), then predict again",
        )


def _check_predictor(predictor, cases: list[list[str]]) -> None:
    from m2s_nnunet.network import M2SNet

    network = getattr(predictor, "network", None)
    network = getattr(network, "_orig_mod", network)
    if not isinstance(network, M2SNet) or not cases:
        return
    reader = predictor.plans_manager.image_reader_writer_class
    natural = reader.__name__ == "NaturalImage2DIO"
    expected = len(predictor.dataset_json["channel_names"])
    check_case_channels(cases, expected, network.in_channels, natural, "H, W" if network.dim == 2 else "D, H, W")


def install() -> None:
    """Wrap ``nnUNetPredictor._manage_input_and_output_lists`` with the channel check."""
    global _installed
    if _installed:
        return
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    original = nnUNetPredictor._manage_input_and_output_lists

    def _manage_input_and_output_lists(self, *args, **kwargs):
        result = original(self, *args, **kwargs)
        _check_predictor(self, result[0])
        return result

    nnUNetPredictor._manage_input_and_output_lists = _manage_input_and_output_lists
    _installed = True
