"""What differs between input kinds (2D pictures, 3D volumes), asked through one small interface.

``convert`` picks the kind once, from what ``pair_inputs`` found, and from then on asks it instead of branching:
which options it refuses, how it scans and writes a case, which file ending and nnU-Net reader its dataset uses.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from m2s_nnunet.conversion.images2d import Pictures
from m2s_nnunet.conversion.labels import LabelPlan
from m2s_nnunet.conversion.options import ConvertOptions
from m2s_nnunet.conversion.pairing import Pair
from m2s_nnunet.conversion.scan import Scan
from m2s_nnunet.conversion.volumes3d import Volumes


class InputKind(Protocol):
    """One kind of input: the only place that knows how such cases are checked and written."""

    name: str
    """``'2d'`` or ``'3d'``, as in ``ConversionReport.kind`` and ``pair_inputs``."""
    title: str
    """How the report names the cases (``'2D images'``)."""
    axes: str
    """How the report names the size axes (``'H x W'``)."""
    file_ending: str
    """The dataset's ``file_ending`` (every file written has it)."""
    reader_writer: str
    """nnU-Net's reader for the written files (``overwrite_image_reader_writer``)."""

    def refuse_options(self, opts: ConvertOptions) -> None:
        """Raise ConversionError for options this kind cannot honour."""

    def scan(self, pairs: list[Pair], opts: ConvertOptions) -> Scan:
        """Decode every image and mask in full; refuse with every problem at once, before anything is written."""

    def write_case(self, pair: Pair, img_dst: Path, lab_dst: Path, plan: LabelPlan, opts: ConvertOptions) -> None:
        """Write one checked case: the image to ``img_dst`` and its mapped labels to ``lab_dst``."""


KINDS: dict[str, InputKind] = {kind.name: kind for kind in (Pictures(), Volumes())}
"""Every input kind by name (``pair_inputs`` tells which one the folders hold)."""
