import torch

import tndiagram


def test_conv_matches_torch():
    torch.manual_seed(0)
    x = torch.randn(2, 4, 9, 8, dtype=torch.float64)
    weight = torch.randn(6, 2, 3, 2, dtype=torch.float64)
    bias = torch.randn(6, dtype=torch.float64)
    result = tndiagram.functional.conv(x, weight, bias, stride=(2, 1), padding=(1, 0), dilation=(1, 2), groups=2)
    expected = torch.nn.functional.conv2d(x, weight, bias, stride=(2, 1), padding=(1, 0), dilation=(1, 2), groups=2)
    torch.testing.assert_close(result, expected)
