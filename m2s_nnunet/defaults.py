"""Project-wide defaults that light modules (the CLI) can import without pulling in torch."""

DEFAULT_ENCODER = "res2net50d"  # deep-stem Res2Net-50 v1b 26w x 4s, the paper's backbone (timm name)
LIGHT_ENCODER = "resnet18"  # ~2x fewer MACs at 352x352: the CPU-friendly choice
