"""Building blocks: the fixed all-ones filters (fast path and plain convolution) and the multi-scale filters."""

from __future__ import annotations

import pytest
import torch

from m2s_nnunet.network.blocks import FixedAllOnesFilter, MultiScaleFilters


@pytest.mark.parametrize("dim,kernel", [(2, 3), (2, 5), (3, 3), (3, 5)])
def test_fast_path_equals_plain_convolution(dim, kernel):
    torch.manual_seed(0)
    fast = FixedAllOnesFilter(16, kernel, dim, fast_path=True).double()
    plain = FixedAllOnesFilter(16, kernel, dim, fast_path=False).double()
    x = torch.randn(2, 16, *([9] * dim), dtype=torch.float64)
    torch.testing.assert_close(fast.box_filter(x), plain.box_filter(x), rtol=1e-10, atol=1e-10)
    plain.load_state_dict(fast.state_dict())
    torch.testing.assert_close(fast(x), plain(x), rtol=1e-10, atol=1e-10)


def test_multi_scale_filters_3d_shapes():
    filters = MultiScaleFilters(8, dim=3)
    x = torch.randn(1, 8, 6, 10, 12)
    assert filters.f3(x).shape == x.shape and filters.f5(x).shape == x.shape
