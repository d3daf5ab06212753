"""Turn an images folder + a masks folder into an nnU-Net v2 raw dataset (``nnUNet_raw/DatasetXXX_Name``).

Two kinds of input are accepted (:mod:`.kind` picks one per conversion):

* 2D pictures (png/jpg/jpeg/bmp/tif/tiff, RGB or grey): every image becomes ``<case>_0000.png`` and every mask
  ``<case>.png`` with consecutive labels 0..K (:mod:`.images2d`);
* NIfTI volumes (``*.nii.gz``/``*.nii``, CT/MRI): ``<case>_0000.nii.gz`` + ``<case>.nii.gz`` after a geometry
  check of each image against its label (:mod:`.volumes3d`).

Every file is decoded in full and checked before anything is written (corrupt, truncated, multi-page,
non-finite and out-of-range inputs are refused with the file named), all problems are reported together, and
the dataset is built in a hidden sibling folder that is renamed into place only when complete
(:mod:`.dataset`; what a killed run leaves behind is cleaned up by the next one).

Modules, in the order ``convert`` (:mod:`.driver`) uses them: :mod:`.options`, :mod:`.pairing`, :mod:`.scan`,
:mod:`.labels`, :mod:`.splits`, :mod:`.dataset`, :mod:`.report`.
"""

from m2s_nnunet.conversion.dataset import OWNED_TOP_LEVEL, dataset_folder_name, resolve_raw_root
from m2s_nnunet.conversion.driver import convert
from m2s_nnunet.conversion.images2d import ALPHA_MODES, COLOUR_MODES, GREY_MODES, SIXTEEN_BIT_MODES
from m2s_nnunet.conversion.kind import KINDS, InputKind
from m2s_nnunet.conversion.labels import LabelPlan, decide_label_plan, parse_label_args
from m2s_nnunet.conversion.options import ConversionError, ConvertOptions, check_options
from m2s_nnunet.conversion.pairing import Pair, pair_inputs, sanitize_case, unsupported_files
from m2s_nnunet.conversion.report import ConversionReport, format_report
from m2s_nnunet.conversion.splits import make_splits, read_case_list
from m2s_nnunet.conversion.volumes3d import GEOMETRY
from m2s_nnunet.errors import UserError
from m2s_nnunet.inputs.endings import CONVERT_VOLUME_ENDINGS as VOLUME_ENDINGS
from m2s_nnunet.inputs.endings import JPEG_ENDINGS
from m2s_nnunet.inputs.endings import PICTURE_ENDINGS as IMAGE_ENDINGS

__all__ = [
    "ALPHA_MODES",
    "COLOUR_MODES",
    "GEOMETRY",
    "GREY_MODES",
    "IMAGE_ENDINGS",
    "JPEG_ENDINGS",
    "KINDS",
    "OWNED_TOP_LEVEL",
    "SIXTEEN_BIT_MODES",
    "VOLUME_ENDINGS",
    "ConversionError",
    "ConversionReport",
    "ConvertOptions",
    "InputKind",
    "LabelPlan",
    "Pair",
    "UserError",
    "check_options",
    "convert",
    "dataset_folder_name",
    "decide_label_plan",
    "format_report",
    "make_splits",
    "pair_inputs",
    "parse_label_args",
    "read_case_list",
    "resolve_raw_root",
    "sanitize_case",
    "unsupported_files",
]
