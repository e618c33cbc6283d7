"""Tests for centernet.models.dcn: DeformConv against a naive plain-PyTorch modulated deformable convolution."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from centernet.models.dcn import DeformConv

TOL = 1e-4
MASK_SATURATING_LOGIT = 100.0  # sigmoid(100) == 1.0 exactly in float32


def _bilinear_zero_padded(img: torch.Tensor, py: torch.Tensor, px: torch.Tensor) -> torch.Tensor:
    """Sample img [B, C, H, W] at fractional locations py, px [B, Ho, Wo]; zero outside. Returns [B, C, Ho, Wo]."""
    B, C, H, W = img.shape
    y0, x0 = torch.floor(py), torch.floor(px)
    ly, lx = py - y0, px - x0
    flat = img.reshape(B, C, H * W)
    out = torch.zeros(B, C, *py.shape[1:], dtype=img.dtype)
    for yy, wy in ((y0, 1 - ly), (y0 + 1, ly)):
        for xx, wx in ((x0, 1 - lx), (x0 + 1, lx)):
            valid = (yy >= 0) & (yy <= H - 1) & (xx >= 0) & (xx <= W - 1)
            index = (yy.clamp(0, H - 1).long() * W + xx.clamp(0, W - 1).long()).reshape(B, 1, -1)
            values = torch.gather(flat, 2, index.expand(B, C, -1)).reshape(B, C, *py.shape[1:])
            out = out + values * (wy * wx * valid)[:, None]
    return out


def naive_deform_conv(
    x: torch.Tensor,
    offset: torch.Tensor,
    mask: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    stride: int,
    padding: int,
    dilation: int,
) -> torch.Tensor:
    """Reference DCNv2: for every output position and tap sample base + dilation * tap + (dy, dx), times the mask."""
    C = x.shape[1]
    out_channels, _, kh, kw = weight.shape
    taps = kh * kw
    groups = mask.shape[1] // taps
    cpg = C // groups
    Ho, Wo = offset.shape[2:]
    base_y = (torch.arange(Ho, dtype=x.dtype) * stride - padding)[None, :, None]  # [1, Ho, 1]
    base_x = (torch.arange(Wo, dtype=x.dtype) * stride - padding)[None, None, :]  # [1, 1, Wo]
    group_cols = []
    for g in range(groups):
        tap_cols = []
        for i, j in itertools.product(range(kh), range(kw)):
            t = g * taps + i * kw + j
            py = base_y + i * dilation + offset[:, 2 * t]  # [B, Ho, Wo]
            px = base_x + j * dilation + offset[:, 2 * t + 1]
            sampled = _bilinear_zero_padded(x[:, g * cpg : (g + 1) * cpg], py, px)
            tap_cols.append(sampled * mask[:, t, None])  # [B, cpg, Ho, Wo]
        group_cols.append(torch.stack(tap_cols, dim=2))  # [B, cpg, taps, Ho, Wo]
    cols = torch.cat(group_cols, dim=1)  # [B, C, taps, Ho, Wo]
    out = torch.einsum("bctyx,oct->boyx", cols, weight.reshape(out_channels, C, taps))
    return out if bias is None else out + bias[None, :, None, None]


CASES = list(itertools.product((1, 2), (1, 2), (1, 2)))  # stride, dilation, deformable groups


def _module(stride: int, dilation: int, groups: int) -> DeformConv:
    in_channels = 3 if groups == 1 else 4
    return DeformConv(in_channels, 4, 3, stride=stride, padding=dilation, dilation=dilation, deformable_groups=groups)


def _leaf(t: torch.Tensor) -> torch.Tensor:
    return t.detach().clone().requires_grad_(True)


@pytest.mark.parametrize(("stride", "dilation", "groups"), CASES)
def test_deform_matches_naive_forward_and_backward(stride, dilation, groups):
    torch.manual_seed(stride * 10 + dilation * 3 + groups)
    m = _module(stride, dilation, groups)
    with torch.no_grad():
        m.bias.normal_()
    x = torch.randn(2, m.in_channels, 6, 7)
    Ho = (6 + 2 * dilation - dilation * 2 - 1) // stride + 1
    Wo = (7 + 2 * dilation - dilation * 2 - 1) // stride + 1
    offset = 1.5 * torch.randn(2, 2 * groups * 9, Ho, Wo)  # reaches outside the image too
    mask = torch.rand(2, groups * 9, Ho, Wo)
    grad_out = torch.randn(2, 4, Ho, Wo)

    xs, offs, masks = _leaf(x), _leaf(offset), _leaf(mask)
    out = m.deform(xs, offs, masks)
    (out * grad_out).sum().backward()

    ref_leaves = [_leaf(t.double()) for t in (x, offset, mask, m.weight, m.bias)]
    ref = naive_deform_conv(*ref_leaves, stride, dilation, dilation)
    (ref * grad_out.double()).sum().backward()

    torch.testing.assert_close(out.double(), ref, atol=TOL, rtol=TOL)
    for name, got, want in zip(
        ("input", "offset", "mask", "weight", "bias"), (xs, offs, masks, m.weight, m.bias), ref_leaves
    ):
        torch.testing.assert_close(got.grad.double(), want.grad, atol=TOL, rtol=TOL, msg=f"grad {name}")


@pytest.mark.parametrize(("stride", "dilation", "groups"), [(1, 1, 1), (2, 2, 2)])
def test_forward_with_predicted_offsets_matches_naive(stride, dilation, groups):
    """Random conv_offset_mask weights: split o1, o2, mask = chunk(3); offset = cat(o1, o2); mask = sigmoid."""
    torch.manual_seed(7)
    m = _module(stride, dilation, groups)
    with torch.no_grad():
        m.conv_offset_mask.weight.normal_(std=0.5)
        m.conv_offset_mask.bias.normal_()
        m.bias.normal_()
    x = torch.randn(2, m.in_channels, 6, 7)
    xs = _leaf(x)
    out = m(xs)
    grad_out = torch.randn_like(out)
    (out * grad_out).sum().backward()

    xr = _leaf(x.double())
    wr, br, owr, obr = (
        _leaf(p.double()) for p in (m.weight, m.bias, m.conv_offset_mask.weight, m.conv_offset_mask.bias)
    )
    pred = F.conv2d(xr, owr, obr, stride=stride, padding=dilation, dilation=dilation)
    n_off = 2 * groups * 9
    assert pred.shape[1] == 3 * groups * 9
    ref = naive_deform_conv(xr, pred[:, :n_off], torch.sigmoid(pred[:, n_off:]), wr, br, stride, dilation, dilation)
    (ref * grad_out.double()).sum().backward()

    torch.testing.assert_close(out.double(), ref, atol=TOL, rtol=TOL)
    for got, want in zip(
        (xs, m.weight, m.bias, m.conv_offset_mask.weight, m.conv_offset_mask.bias), (xr, wr, br, owr, obr)
    ):
        torch.testing.assert_close(got.grad.double(), want.grad, atol=TOL, rtol=TOL)


@pytest.mark.parametrize(("stride", "dilation", "groups"), CASES)
def test_zero_offsets_full_mask_equals_conv2d(stride, dilation, groups):
    torch.manual_seed(3)
    m = _module(stride, dilation, groups)
    with torch.no_grad():
        m.bias.normal_()
        m.conv_offset_mask.bias[2 * groups * 9 :] = MASK_SATURATING_LOGIT
    x = torch.randn(2, m.in_channels, 6, 7)
    want = F.conv2d(x, m.weight, m.bias, stride=stride, padding=dilation, dilation=dilation)
    torch.testing.assert_close(m(x), want, atol=1e-5, rtol=1e-5)


def test_initial_state_is_half_conv():
    torch.manual_seed(0)
    m = DeformConv(3, 5)
    x = torch.randn(2, 3, 6, 7)
    offset, mask = m.offsets_and_mask(x)
    assert offset.shape == (2, 18, 6, 7) and mask.shape == (2, 9, 6, 7)
    assert torch.equal(offset, torch.zeros_like(offset))
    assert torch.equal(mask, torch.full_like(mask, 0.5))
    assert torch.equal(m.bias, torch.zeros(5))
    stdv = 1 / math.sqrt(3 * 9)
    assert m.weight.abs().max() <= stdv and m.weight.abs().max() > stdv / 2
    torch.testing.assert_close(m(x), 0.5 * F.conv2d(x, m.weight, padding=1), atol=1e-6, rtol=1e-6)


def test_initial_state_hand_computed():
    m = DeformConv(1, 1)
    with torch.no_grad():
        m.weight.fill_(1.0)
    # 3x3 ones, 3x3 ones kernel, padding 1: taps inside the image are 4 at corners, 6 at edges, 9 at the centre
    want = 0.5 * torch.tensor([[4.0, 6.0, 4.0], [6.0, 9.0, 6.0], [4.0, 6.0, 4.0]])
    assert torch.equal(m(torch.ones(1, 1, 3, 3))[0, 0], want)


def test_offset_layout_is_dy_dx_interleaved_per_tap():
    """Only tap t = (i=0, j=2) has weight; offset channel 2t shifts rows (dy), channel 2t+1 columns (dx)."""
    m = DeformConv(1, 1, bias=False)
    i, j = 0, 2
    t = i * 3 + j
    with torch.no_grad():
        m.weight.zero_()
        m.weight[0, 0, i, j] = 1.0
        m.conv_offset_mask.bias[18:] = MASK_SATURATING_LOGIT
    x = torch.arange(1.0, 21.0).reshape(1, 1, 4, 5)
    padded = F.pad(x, (3, 3, 3, 3))[0, 0]  # zero padding 3 on each side

    def expected(dy: int, dx: int) -> torch.Tensor:
        # output (y, x) reads x[y - 1 + i + dy, x - 1 + j + dx]
        r0, c0 = 3 - 1 + i + dy, 3 - 1 + j + dx
        return padded[r0 : r0 + 4, c0 : c0 + 5]

    assert torch.equal(m(x)[0, 0], expected(0, 0))
    for channel, (dy, dx) in ((2 * t, (1, 0)), (2 * t + 1, (0, 1))):
        with torch.no_grad():
            m.conv_offset_mask.bias[:18] = 0.0
            m.conv_offset_mask.bias[channel] = 1.0
        assert torch.equal(m(x)[0, 0], expected(dy, dx)), f"channel {channel}"


def test_fractional_offset_hand_computed():
    """1x1 kernel, dx = 0.5: the average of a pixel and its right neighbour (zero past the right edge)."""
    m = DeformConv(1, 1, kernel_size=1, padding=0, bias=False)
    with torch.no_grad():
        m.weight.fill_(2.0)
    x = torch.tensor([[[[0.0, 2.0, 4.0, 8.0]]]])
    offset = torch.tensor([0.0, 0.5]).reshape(1, 2, 1, 1).expand(1, 2, 1, 4)
    mask = torch.full((1, 1, 1, 4), 0.25)
    got = m.deform(x, offset, mask)[0, 0, 0]
    assert torch.allclose(got, 2.0 * 0.25 * torch.tensor([1.0, 3.0, 6.0, 4.0]))


def test_state_dict_matches_original_layout_and_round_trips():
    m = DeformConv(64, 64, 3, stride=1, padding=1, dilation=1, deformable_groups=1)
    shapes = {k: tuple(v.shape) for k, v in m.state_dict().items()}
    assert shapes == {
        "weight": (64, 64, 3, 3),
        "bias": (64,),
        "conv_offset_mask.weight": (27, 64, 3, 3),
        "conv_offset_mask.bias": (27,),
    }
    assert DeformConv(8, 4, deformable_groups=2).conv_offset_mask.weight.shape == (54, 8, 3, 3)
    assert list(DeformConv(8, 4, bias=False).state_dict()) == [
        "weight",
        "conv_offset_mask.weight",
        "conv_offset_mask.bias",
    ]

    torch.manual_seed(1)
    src = DeformConv(4, 3)
    with torch.no_grad():
        for p in src.parameters():
            p.normal_(std=0.3)
    dst = DeformConv(4, 3)
    dst.load_state_dict(src.state_dict())
    x = torch.randn(1, 4, 5, 5)
    assert torch.equal(dst(x), src(x))


def test_empty_batch_and_errors():
    m = DeformConv(3, 4, stride=2)
    assert m(torch.zeros(0, 3, 6, 7)).shape == (0, 4, 3, 4)
    with pytest.raises(ValueError, match="divisible by deformable_groups"):
        DeformConv(3, 4, deformable_groups=2)
    with pytest.raises(ValueError, match=r"expected input \[B, 3, H, W\]"):
        m(torch.zeros(1, 2, 6, 7))


def test_bfloat16_autocast_on_cpu_runs_in_float32() -> None:
    """torchvision's CPU kernel lacks bfloat16: under autocast the layer computes in float32."""
    torch.manual_seed(0)
    layer = DeformConv(4, 6, 3, padding=1)
    torch.nn.init.normal_(layer.conv_offset_mask.weight, std=0.1)  # non-trivial offsets and mask
    x = torch.randn(2, 4, 7, 7)
    expected = layer(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = layer(x)
        out_bf16_input = layer(x.bfloat16())
    assert out.dtype == torch.float32 and out_bf16_input.dtype == torch.bfloat16
    # the offset/mask conv runs in bfloat16 under autocast: close to, not equal to, the float32 result
    assert torch.allclose(out, expected, atol=5e-2)
    assert torch.allclose(out_bf16_input.float(), expected, atol=1e-1)
