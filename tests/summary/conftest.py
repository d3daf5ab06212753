"""The fake results tree every summary test starts from."""

from fake_results import results  # noqa: F401 - a fake nnUNet_results tree (Dataset777_Fake, one fold missing)
