"""``nnUNetv2_train -pretrained_weights``: build the network those weights were trained with.

nnU-Net's ``run_training.maybe_load_checkpoint`` builds the trainer's network and then requires every weight of
the file to fit it. For an M2SNet trainer the network to build is the one the file's model was trained with (its
record, or its layout for models of m2s-nnunet 0.6 and older), not the one today's recipe would build; the
wrapper tells the trainer before nnU-Net initialises it.
"""

from __future__ import annotations

_installed = False


def install() -> None:
    """Wrap ``nnunetv2.run.run_training.maybe_load_checkpoint`` (idempotent)."""
    global _installed
    if _installed:
        return
    from nnunetv2.run import run_training

    original = run_training.maybe_load_checkpoint

    def maybe_load_checkpoint(nnunet_trainer, continue_training: bool, validation_only: bool,
                              pretrained_weights_file: str | None = None):
        from m2s_nnunet.training.trainer import M2SNetTrainer

        if (pretrained_weights_file is not None and not continue_training and not validation_only
                and isinstance(nnunet_trainer, M2SNetTrainer) and not nnunet_trainer.was_initialized):
            nnunet_trainer.use_pretrained_network(pretrained_weights_file)
        return original(nnunet_trainer, continue_training, validation_only, pretrained_weights_file)

    run_training.maybe_load_checkpoint = maybe_load_checkpoint
    _installed = True
