"""The fused penalty-reduced focal loss equals the plain formula (loss and gradient) and saves only its inputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import centernet.losses.fused_focal as fused_focal
from centernet.losses import PenaltyReducedFocalLoss, penalty_reduced_focal_loss, penalty_reduced_focal_loss_reference

# The reference is evaluated in float64 so that its own float32 rounding (about 1e-6 of the largest
# gradient) does not count against the fused float32 result.
RTOL = 1e-6
# Fused float32 against reference float32: two float32 evaluations, each within ~1e-6 of the exact one.
RTOL_FP32_PAIR = 3e-6


def _loss_and_grad(fn, logits: torch.Tensor, *args, **kwargs) -> tuple[torch.Tensor, torch.Tensor]:
    x = logits.detach().clone().requires_grad_(True)
    loss = fn(x, *args, **kwargs)
    loss.backward()
    return loss.detach(), x.grad


def _assert_matches_reference(logits, target, mask=None, normaliser=None, **params) -> None:
    """Fused float32 == reference float64 to RTOL (loss and every gradient element)."""
    loss, grad = _loss_and_grad(penalty_reduced_focal_loss, logits, target, mask, normaliser=normaliser, **params)
    mask64 = None if mask is None else mask.double()
    ref_loss, ref_grad = _loss_and_grad(
        penalty_reduced_focal_loss_reference, logits.double(), target.double(), mask64, normaliser=normaliser, **params
    )
    assert loss.dtype == torch.float32 and grad.dtype == torch.float32
    assert loss.item() == pytest.approx(ref_loss.item(), rel=RTOL)
    torch.testing.assert_close(grad.double(), ref_grad, rtol=RTOL, atol=1e-30)


def _random(batch, classes, height, width, *, seed, mask_channels=None, positives=0.002):
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(batch, classes, height, width, generator=gen) * 3 - 2
    target = torch.rand(batch, classes, height, width, generator=gen) ** 6 * 0.999
    target[torch.rand(batch, classes, height, width, generator=gen) < positives] = 1.0
    mask = None
    if mask_channels is not None:
        mask = (torch.rand(batch, mask_channels, height, width, generator=gen) > 0.25).float()
    return logits, target, mask


def test_golden_inputs_match_reference_and_original(golden: dict[str, np.ndarray]) -> None:
    logits = torch.from_numpy(golden["f_logits"])
    target = torch.from_numpy(golden["f_target"])
    mask = torch.from_numpy(golden["f_mask"])
    nopos = torch.from_numpy(golden["f_target_nopos"])
    for case_target, case_mask, original in (
        (target, None, golden["f_loss_nomask"]),
        (target, mask, golden["f_loss_mask"]),
        (nopos, None, golden["f_loss_nopos"]),
    ):
        _assert_matches_reference(logits, case_target, case_mask)
        loss, grad = _loss_and_grad(penalty_reduced_focal_loss, logits, case_target, case_mask)
        ref_loss, ref_grad = _loss_and_grad(penalty_reduced_focal_loss_reference, logits, case_target, case_mask)
        assert loss.item() == pytest.approx(ref_loss.item(), rel=1e-6)
        torch.testing.assert_close(grad, ref_grad, rtol=RTOL_FP32_PAIR, atol=RTOL_FP32_PAIR * ref_grad.abs().max())
        assert loss.item() == pytest.approx(float(original), rel=1e-4)  # the original clamps p to [1e-4, 1 - 1e-4]


@pytest.mark.parametrize("mask_channels", [None, 1, 7])
def test_random_masked_inputs_match_reference(mask_channels: int | None) -> None:
    # 7 classes of 24 x 40 cells: chunks of several planes, the last one shorter
    logits, target, mask = _random(3, 7, 24, 40, seed=1, mask_channels=mask_channels, positives=0.01)
    assert (target == 1).sum() > 0
    _assert_matches_reference(logits, target, mask)


def test_no_positive_and_all_positives_masked_match_reference() -> None:
    logits, target, mask = _random(2, 3, 16, 16, seed=2, mask_channels=1, positives=0.0)
    assert (target == 1).sum() == 0
    _assert_matches_reference(logits, target, mask)
    _, target, _ = _random(2, 3, 16, 16, seed=3, positives=0.02)
    only_negatives = (target < 1).float()  # [B, C, H, W] mask that ignores every centre
    _assert_matches_reference(logits, target, only_negatives)


def test_bool_mask_alpha_beta_and_planes_larger_than_a_chunk(monkeypatch: pytest.MonkeyPatch) -> None:
    logits, target, mask = _random(2, 4, 16, 20, seed=4, mask_channels=4, positives=0.01)
    for alpha, beta in ((2.0, 4.0), (1.0, 1.0), (1.5, 3.0), (0.0, 0.0), (3.0, 8.0)):
        _assert_matches_reference(logits, target, mask.bool(), alpha=alpha, beta=beta)
    monkeypatch.setattr(fused_focal, "CPU_CHUNK_ELEMENTS", 100)  # one 16 x 20 plane per chunk
    _assert_matches_reference(logits, target, mask[:, :1])


def test_normaliser_replaces_the_positive_count() -> None:
    logits, target, mask = _random(2, 5, 12, 12, seed=5, mask_channels=1, positives=0.02)
    num_pos = ((target == 1).float() * mask).sum()
    assert num_pos > 1
    loss, grad = _loss_and_grad(penalty_reduced_focal_loss, logits, target, mask)
    unnormalised_sum, unnormalised_grad = loss * num_pos, grad * num_pos
    normaliser = torch.tensor(7.5)
    got, got_grad = _loss_and_grad(penalty_reduced_focal_loss, logits, target, mask, normaliser=normaliser)
    assert got.item() == pytest.approx((unnormalised_sum / 7.5).item(), rel=1e-6)
    torch.testing.assert_close(got_grad, unnormalised_grad / 7.5, rtol=1e-5, atol=1e-12)
    _assert_matches_reference(logits, target, mask, normaliser)
    # a zero normaliser (no positive anywhere) divides by 1, like a zero count
    zero, _ = _loss_and_grad(penalty_reduced_focal_loss, logits, target, mask, normaliser=torch.tensor(0.0))
    assert zero.item() == pytest.approx(unnormalised_sum.item(), rel=1e-6)
    # no gradient flows into the normaliser
    normaliser.requires_grad_(True)
    PenaltyReducedFocalLoss()(logits.requires_grad_(True), target, mask, normaliser).backward()
    assert normaliser.grad is None


def test_only_the_inputs_are_saved_for_backward() -> None:
    logits, target, mask = _random(2, 6, 16, 16, seed=6, mask_channels=1)
    logits.requires_grad_(True)
    saved: list[torch.Tensor] = []

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        saved.append(tensor)
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        loss = penalty_reduced_focal_loss(logits, target, mask)
    full_size = [t for t in saved if t.numel() >= target.numel()]
    assert {t.data_ptr() for t in full_size} == {logits.data_ptr(), target.data_ptr()}
    assert all(t.numel() in (1, mask.numel(), target.numel()) for t in saved)
    assert loss.grad_fn is not None and type(loss.grad_fn).__name__ == "PenaltyReducedFocalFunctionBackward"


def test_module_uses_the_fused_function_and_half_inputs() -> None:
    logits, target, mask = _random(1, 3, 8, 8, seed=7, mask_channels=1, positives=0.05)
    module = PenaltyReducedFocalLoss(alpha=2.0, beta=4.0)
    assert "backend='auto'" in repr(module)
    x = logits.bfloat16().requires_grad_(True)
    loss = module(x, target.bfloat16(), mask)
    loss.backward()
    assert loss.dtype == torch.float32 and x.grad is not None and x.grad.dtype == torch.bfloat16
    ref_loss, ref_grad = _loss_and_grad(
        penalty_reduced_focal_loss_reference, x.detach().float(), target.bfloat16(), mask
    )
    assert loss.item() == pytest.approx(ref_loss.item(), rel=1e-6)
    torch.testing.assert_close(x.grad, ref_grad.bfloat16())


def test_channels_last_logits_large_logits_and_empty_input() -> None:
    logits, target, _ = _random(2, 4, 8, 8, seed=8, positives=0.05)
    _assert_matches_reference(logits.contiguous(memory_format=torch.channels_last), target)
    extreme = torch.tensor([100.0, -100.0, 100.0, -100.0]).view(1, 1, 2, 2)
    centres = torch.tensor([1.0, 0.0, 0.0, 1.0]).view(1, 1, 2, 2)
    loss, grad = _loss_and_grad(penalty_reduced_focal_loss, extreme, centres)
    assert torch.isfinite(loss) and torch.isfinite(grad).all()
    empty = torch.zeros(0, 4, 8, 8)
    loss, grad = _loss_and_grad(penalty_reduced_focal_loss, empty, empty)
    assert loss.item() == 0.0 and grad.shape == empty.shape


def test_bad_backend_is_rejected() -> None:
    x = torch.zeros(1, 1, 2, 2)
    with pytest.raises(ValueError, match="backend must be one of"):
        penalty_reduced_focal_loss(x, x, backend="triton")
    with pytest.raises(ValueError, match="backend must be one of"):
        PenaltyReducedFocalLoss(backend="fast")


def test_compiled_backend_matches_reference() -> None:
    """The torch.compile kernels (one loop per pass) compute the same loss and gradient."""
    logits, target, mask = _random(2, 3, 8, 12, seed=9, mask_channels=1, positives=0.03)
    loss, grad = _loss_and_grad(penalty_reduced_focal_loss, logits, target, mask, backend="compiled")
    assert not fused_focal._compile_failed, "torch.compile failed on this machine"
    ref_loss, ref_grad = _loss_and_grad(
        penalty_reduced_focal_loss_reference, logits.double(), target.double(), mask.double()
    )
    assert loss.item() == pytest.approx(ref_loss.item(), rel=RTOL)
    torch.testing.assert_close(grad.double(), ref_grad, rtol=RTOL, atol=RTOL * ref_grad.abs().max().item())
