"""Whether a CPU computes bfloat16 natively, and the switch that lets users keep a network in fp32 on such CPUs.

oneDNN runs bf16 convolutions natively on CPUs with AVX512-BF16 or AMX; elsewhere it emulates them, slower than
fp32, so bf16 is only used where it is native unless forced.
"""

from __future__ import annotations

import functools

from m2s_nnunet.envflags import env_flag

# the network under bf16 autocast on CPU: unset (default) where the CPU computes bf16 natively, "0" never, "1" always
NETWORK_ENV = "M2S_NNUNET_CPU_BF16"
# "1": every M2SNet model also *predicts* under bf16 autocast on such CPUs, whatever it was trained in (training
# keeps its precision); unset or "0": a model predicts in the precision it was trained in
PREDICT_ENV = "M2S_NNUNET_PREDICT_BF16"


@functools.cache
def cpu_computes_bf16() -> bool:
    """Whether oneDNN computes bf16 natively on this CPU."""
    import torch

    return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())


def network_uses_cpu_bf16(setting: bool) -> bool:
    """Whether a network whose settings ask for ``cpu_bf16`` runs under bf16 autocast on this machine's CPU."""
    if not setting:
        return False
    forced = env_flag(NETWORK_ENV, default=None)
    return cpu_computes_bf16() if forced is None else forced


def network_predicts_in_cpu_bf16(setting: bool) -> bool:
    """Whether a network predicts (eval mode) under bf16 autocast on this machine's CPU: where it trains in bf16
    (``network_uses_cpu_bf16``), or where the user asks for it at predict time (``M2S_NNUNET_PREDICT_BF16=1``) and
    the CPU computes bf16 (``M2S_NNUNET_CPU_BF16`` overrides that check as for training).

    The user's switch, not a version's default: without it a trained model predicts what it always predicted.
    """
    return network_uses_cpu_bf16(setting or bool(env_flag(PREDICT_ENV, default=False)))
