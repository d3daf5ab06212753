"""Guards installed in nnU-Net's own processes (``nnUNetv2_train``, ``nnUNetv2_predict``) when they load our trainers.

nnU-Net imports ``trainers/m2s_nnunet_trainers.py`` (the ``nnUNet_extTrainer`` shim) in its main process before it
trains or predicts; the shim calls :func:`install`, which adds:

* ``input_channels``: the input images' channel count is checked before ``nnUNetv2_predict`` preprocesses
  anything (nnU-Net's normaliser dies with an ``IndexError`` on an RGBA image before M2SNet's own clear message);
* ``orphaned_workers``: data-augmentation workers forked by the training process exit when it is gone (after a
  ``kill -9`` they kept running, ~700 MB each);
* ``clean_errors``: our input errors (``m2s_nnunet.errors.UserError``) print as one message, without a traceback;
* ``pretrained_weights``: ``-pretrained_weights`` builds the network the weights were trained with.

Installing twice is harmless.
"""

from __future__ import annotations

from m2s_nnunet.nnunet_guards import clean_errors, input_channels, orphaned_workers, pretrained_weights


def install() -> None:
    """Install every guard in this process (idempotent)."""
    clean_errors.install()
    orphaned_workers.install()
    input_channels.install()
    pretrained_weights.install()
