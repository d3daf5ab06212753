"""M2SNet: encoder -> multi-scale subtraction pyramid -> top-down decoder -> segmentation head(s).

Written once for 2D and 3D: the encoder describes its levels in ``feature_info`` (channels and per-axis
strides, hence the dimension), and every block picks its ops from that dimension.

Box names follow the paper's figure (Zhao et al. 2023, arXiv 2303.10894): R2..R5 are the reduced encoder
levels, Dxy the subtraction units of the pyramid, L1..L4 the per-scale aggregations, T the top conv on X5,
O4..O1 the decoder stages.
"""

from __future__ import annotations

import torch
from torch import nn

from m2s_nnunet.network.blocks import ConvNormAct, MultiScaleFilters, resize_to
from m2s_nnunet.network.decoder import (
    LevelAggregation,
    M2SDecoder,
    RefineStage,
    SegmentationHeads,
    SubtractionPyramid,
)
from m2s_nnunet.network.encoder import DEFAULT_ENCODER, TimmEncoder
from m2s_nnunet.network.encoder_protocol import EncoderFeatures, M2SEncoder
from m2s_nnunet.network.frozen_weights import refuse_new_weights_if_frozen, remember_if_frozen
from m2s_nnunet.network.onednn_conv import onednn_inference
from m2s_nnunet.network.thin_conv3d import thin_conv3d_in_float32


class M2SNet(nn.Module):
    """Multi-scale in multi-scale subtraction network (2D with a timm encoder, 2D or 3D with a plans encoder).

    Args:
        in_channels: image channels (1 for CT/ultrasound/MRI, 3 for RGB, more for multi-modal).
        num_classes: output channels; the network returns logits, never probabilities.
        encoder: a timm CNN name (the default is the paper's deep-stem Res2Net-50), or a module that
            implements ``M2SEncoder`` (e.g. ``PlansEncoder``).
        width: decoder channels (64 in the paper).
        side_heads: build extra heads on O2..O4 for deep supervision. Off: the heads do not exist.
        deep_supervision: with side heads, return ``[full, O2, O3, O4]`` logits (1/4, 1/8, 1/16 of the input
            with a timm encoder; ``side_head_scales`` in general) instead of one tensor.
        fast_filters: compute the fixed all-ones filters as channel-sum box filters (same result, faster).
        norm: decoder normalisation, "batch" (the paper) or "instance" (nnU-Net's choice for 3D).
        refine: after O1, go on to the encoder's features finer than X2 (stride 2, then 1 for nnU-Net's
            encoder; the stride-2 stem for ResNets), one concatenate+conv unit each, and put the head there,
            instead of upsampling O1's stride-4 logits. Not in the paper; off by default.
        cpu_bf16: run on CPU inputs under bfloat16 autocast and return fp32 logits (the builder sets it where the
            settings ask for it and the CPU computes bf16 natively). GPU inputs keep the caller's precision.
        cpu_bf16_eval: the same in eval mode only (prediction), for a network trained in fp32 (the builder sets it
            where the user asks for it, ``M2S_NNUNET_PREDICT_BF16=1``).

    Input (B, in_channels, *spatial), each side at least the encoder's total stride (32 for timm CNNs);
    any size, not only multiples of it. Output (B, num_classes, *spatial) logits, or a list with DS on.
    """

    def __init__(
        self,
        in_channels: int = 3,
        num_classes: int = 1,
        encoder: str | M2SEncoder = DEFAULT_ENCODER,
        width: int = 64,
        side_heads: bool = False,
        deep_supervision: bool = False,
        fast_filters: bool = True,
        norm: str = "batch",
        refine: bool = False,
        cpu_bf16: bool = False,
        cpu_bf16_eval: bool = False,
    ) -> None:
        super().__init__()
        if deep_supervision and not side_heads:
            raise ValueError("deep_supervision=True needs side_heads=True (the heads it would use)")
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.deep_supervision = deep_supervision
        self.cpu_bf16 = cpu_bf16
        self.cpu_bf16_eval = cpu_bf16_eval
        # float32 CPU inference 3D convolutions through oneDNN (onednn_conv.py); False: PyTorch's own choice
        self.cpu_onednn = True
        self.encoder = TimmEncoder(encoder, in_channels) if isinstance(encoder, str) else encoder
        # checked first: it is what M2SNet is built from, and the protocol check below cannot look inside it
        info = getattr(self.encoder, "feature_info", None)
        if not isinstance(info, EncoderFeatures):
            found = "none" if info is None else f"a {type(info).__name__}"
            raise TypeError(f"{type(self.encoder).__name__}.feature_info must be an EncoderFeatures describing "
                            f"the levels X1..X5 (m2s_nnunet.network.encoder_protocol), got {found}")
        if not isinstance(self.encoder, M2SEncoder):
            raise TypeError(f"{type(self.encoder).__name__} does not implement the M2SEncoder protocol "
                            "(m2s_nnunet.network.encoder_protocol)")
        dim = self.dim = info.dim
        c1, c2, c3, c4, c5 = info.channels

        def unit(c_in: int) -> ConvNormAct:
            return ConvNormAct(c_in, width, dim, norm=norm)

        # Registration order and names are the checkpoint layout (tests/data/m2snet2d_reference.pt): keep them.
        # X1 already has 64 channels in ResNet-family encoders (identity, as in the paper).
        self.reduce_x1 = nn.Identity() if c1 == width else unit(c1)
        self.reduce = nn.ModuleList([unit(c) for c in (c2, c3, c4, c5)])  # R2..R5
        self.filters = MultiScaleFilters(width, dim, fast_path=fast_filters, norm=norm)  # shared by all MSSUs
        self.pyramid = SubtractionPyramid(width, dim, norm)
        self.pre_d54321 = unit(width)  # the extra conv on D5432 before the last MSSU
        self.aggregate = LevelAggregation(width, dim, norm)  # L3, L2, L1 (L4 = D54)
        self.top = unit(c5)  # T
        self.decode = M2SDecoder(width, dim, norm)  # O4, O3, O2
        fine = info.fine_channels if refine else ()
        self.refine = refine and bool(fine)
        main_channels = width
        if self.refine:
            self.o1 = unit(width)  # O1 as a conv unit; the head moves to the end of the refinement path
            stages, c_in = [], width
            for c_skip in fine:
                stages.append(RefineStage(c_in, c_skip, dim, norm))
                c_in = c_skip
            self.refine_stages = nn.ModuleList(stages)
            main_channels = c_in
        self.head = SegmentationHeads(width, num_classes, side_heads, dim, main_channels)

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        """PyTorch's, except for a checkpoint of another layout: a network built for a model that records no
        settings (m2s-nnunet <= 0.6; ``layout_resolver`` set by the trainer) becomes the network the checkpoint's
        layout says; any other gets an error that names the settings that differ. Once it holds weights, other
        values are refused where nnU-Net's predictor compiles it with inductor's freezing (``frozen_weights``)."""
        last = getattr(self, "loaded_state_dict", None)  # kept only where the predictor freezes
        if last is not None:
            refuse_new_weights_if_frozen(self, state_dict, last)
        if strict:
            from m2s_nnunet.network.layout import (
                LayoutError,
                describe_difference,
                infer_settings,
                layout_of,
                settings_difference,
            )

            difference = describe_difference(layout_of(self), layout_of(state_dict))
            resolver = getattr(self, "layout_resolver", None)
            if difference and resolver is not None:
                self._become(resolver(state_dict))
            elif difference:
                built, named = getattr(self, "built_with", None), ""  # set by build_m2snet, with the plans
                if built is not None:
                    try:
                        trained = infer_settings(state_dict, built, self.plans_configuration, self.in_channels,
                                                 self.num_classes)
                        named = f"it was trained with {settings_difference(trained, built)}; "
                    except LayoutError:
                        pass  # the difference of keys below is all there is to say
                raise LayoutError(f"this checkpoint does not fit the network built for it: {named}{difference}",
                                  fix="build the network the model records (the plans.json of its model folder), "
                                      "or use the trainer it was trained with")
        result = super().load_state_dict(state_dict, strict=strict, assign=assign)
        self.loaded_state_dict = remember_if_frozen(state_dict)
        return result

    def _become(self, other: M2SNet) -> None:
        """Take over ``other``'s modules and attributes in place (the predictor holds a reference to ``self``)."""
        device = next(self.parameters()).device
        training = self.training
        resolver = getattr(self, "layout_resolver", None)
        self.__dict__.clear()
        self.__dict__.update(other.__dict__)
        if resolver is not None:
            self.layout_resolver = resolver  # another fold of the same model may have another layout too
        self.to(device).train(training)

    @property
    def has_side_heads(self) -> bool:
        return self.head.has_side_heads

    @property
    def side_head_scales(self) -> list[list[float]]:
        """Per-axis scale of the O2, O3, O4 side outputs relative to the input (nnU-Net's DS scales)."""
        return [[1.0 / s for s in strides] for strides in self.encoder.feature_info.reductions[1:4]]

    @property
    def min_input_size(self) -> tuple[int, ...]:
        """The smallest input per axis: the encoder's total stride."""
        return self.encoder.feature_info.reductions[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        if x.dim() != self.dim + 2 or x.shape[1] != self.in_channels:
            axes = "H, W" if self.dim == 2 else "D, H, W"
            raise ValueError(
                f"M2SNet was built for (B, {self.in_channels}, {axes}) inputs but got {tuple(x.shape)}. "
                f"With nnU-Net this means the images have a different channel count than the training "
                f"data (e.g. grey vs RGB PNGs, RGBA PNGs, or a missing/extra _000X channel file); convert them to "
                f"{self.in_channels} channel(s)."
            )
        if any(s < m for s, m in zip(x.shape[2:], self.min_input_size)):
            raise ValueError(f"M2SNet needs inputs of at least {self.min_input_size} (the encoder's stride), "
                             f"got {tuple(x.shape)}")
        if self.encoder.requires_divisible_input and any(
                s % m for s, m in zip(x.shape[2:], self.min_input_size)):
            raise ValueError(f"this encoder needs input sizes divisible by {self.min_input_size}, got "
                             f"{tuple(x.shape)} (nnU-Net's plans patches always are)")
        bf16 = ((self.cpu_bf16 or (self.cpu_bf16_eval and not self.training)) and x.device.type == "cpu"
                and not torch.is_autocast_enabled("cpu"))
        # an autocast the caller has on is left as it is; fp32 3D convolutions of batch 1 need onednn_inference to
        # run in oneDNN (bf16 ones already do), and bf16 3D training needs its thin convolutions in fp32
        if not bf16:
            with onednn_inference(x, self.cpu_onednn):
                return self._forward(x)
        with torch.autocast("cpu", dtype=torch.bfloat16), thin_conv3d_in_float32(x):
            out = self._forward(x)
        return out.float() if isinstance(out, torch.Tensor) else [o.float() for o in out]

    def _forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        if self.refine:
            (x1, x2, x3, x4, x5), fine = self.encoder.features(x)
        else:
            x1, x2, x3, x4, x5 = self.encoder(x)
        x1 = self.reduce_x1(x1)
        r2, r3, r4, r5 = (reduce(f) for reduce, f in zip(self.reduce, (x2, x3, x4, x5)))
        d = self.pyramid(r5, r4, r3, r2, x1, self.filters, self.pre_d54321)
        l4, l3, l2, l1 = self.aggregate(d)
        o4, o3, o2 = self.decode(self.top(x5), l4, l3, l2)
        o1 = resize_to(o2, l1) + l1
        if self.refine:
            o1 = self.o1(o1)
            for stage, skip in zip(self.refine_stages, fine):
                o1 = stage(o1, skip)
        size = tuple(x.shape[2:])
        if not self.deep_supervision:
            return self.head(o1, size)
        # exactly the sizes nnU-Net's DownsampleSegForDSTransform gives the targets: round(size * scale)
        side_sizes = tuple(tuple(round(s * f) for s, f in zip(size, scales)) for scales in self.side_head_scales)
        return self.head(o1, size, (o2, o3, o4), side_sizes)
