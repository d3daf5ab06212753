"""Discovery shim for nnU-Net: point ``nnUNet_extTrainer`` at this folder (``m2s-nnunet env`` prints it).

nnU-Net imports every top-level file here under its bare name and then drops this folder from
``sys.modules``; the real code therefore lives in the installed package ``m2s_nnunet`` (so lazy imports
and pickling keep working) and this file only re-exports the trainer classes. It also installs the guards of
``m2s_nnunet.nnunet_guards`` in nnU-Net's process (input channel check before prediction, no orphaned
data-augmentation workers, input errors without a traceback).
"""

from m2s_nnunet.nnunet_guards import install as _install_guards
from m2s_nnunet.training import *  # noqa: F401,F403
from m2s_nnunet.training import __all__  # noqa: F401

_install_guards()
