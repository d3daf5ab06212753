"""Project-wide defaults that light modules (the CLI) can import without pulling in torch."""

DEFAULT_ENCODER = "res2net50d"  # deep-stem Res2Net-50 v1b 26w x 4s, the paper's backbone (timm name)
LIGHT_ENCODER = "resnet18"  # ~2x fewer MACs at 352x352: the CPU-friendly choice
DECODER_WIDTH_2D = 64  # the paper's
# 3D: half the paper's width. The decoder runs at X2's resolution, which in nnU-Net's 3D topologies is often
# a quarter of the voxels (stride 1x2x2), so a 64-channel decoder alone would need ~37 kB per input voxel.
DECODER_WIDTH_3D = 32
