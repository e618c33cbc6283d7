"""Colour augmentation of the original CenterNet, done in one saturating uint8 pass.

The original (on float ``/255`` images, in cv2's BGR order) applies brightness, contrast and
saturation in random order, each with ``alpha = 1 + U(-0.4, 0.4)``, blending with the grayscale of the
image before augmentation (contrast with its mean), then adds the PCA lighting shift
``eigvec @ (eigval * N(0, 0.1))`` to the channels. With the gray image fixed, every step is linear in
the pixel, so the whole chain is one per-pixel affine ``x' = A x + B gray(x) + C``; because
``gray(x) = w . x`` that is a ``[3, 4]`` colour matrix applied by ``cv2.transform`` on uint8 (no float
image copy). The output-channel permutation (BGR -> RGB) is folded into the same matrix.

Only deviation from the original: the result is rounded and saturated to [0, 255] once, at the end
(the original kept out-of-range floats).
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np

#: PCA lighting eigen-values shipped with the original CenterNet (ImageNet statistics, /255 units).
IMAGENET_PCA_EIGENVALUES = np.array([0.2141788, 0.01817699, 0.00341571], dtype=np.float32)
#: Matching eigen-vectors (rows index the image channel, columns the component), as in the original.
IMAGENET_PCA_EIGENVECTORS = np.array(
    [
        [-0.58752847, -0.69563484, 0.41240637],
        [-0.5832747, 0.00994535, -0.81221408],
        [-0.56089297, 0.71832671, 0.41158938],
    ],
    dtype=np.float32,
)
#: Half-width ``v`` of the brightness/contrast/saturation factor ``alpha = 1 + U(-v, v)``.
COLOR_JITTER_STRENGTH = 0.4
#: Standard deviation of the PCA lighting coefficients.
PCA_LIGHTING_STD = 0.1
#: The original's lighting is in ``/255`` units; this converts it to uint8 units.
PIXEL_MAX = 255.0
#: OpenCV's ``COLOR_BGR2GRAY`` weights (ITU-R BT.601) in B, G, R order.
GRAY_WEIGHTS_BGR = np.array([0.114, 0.587, 0.299], dtype=np.float64)
#: Valid output channel orders (input images are BGR, as read by cv2).
CHANNEL_ORDERS = ("rgb", "bgr")

_NUM_CHANNELS = 3
# One colour op maps (alpha, gray_mean) to (a, b, c) of ``x' = a x + b gray + c``.
_ColorOp = Callable[[float, float], tuple[float, float, float]]


def _brightness(alpha: float, gray_mean: float) -> tuple[float, float, float]:
    """``x' = alpha x``."""
    return alpha, 0.0, 0.0


def _contrast(alpha: float, gray_mean: float) -> tuple[float, float, float]:
    """``x' = alpha x + (1 - alpha) mean(gray)``."""
    return alpha, 0.0, (1.0 - alpha) * gray_mean


def _saturation(alpha: float, gray_mean: float) -> tuple[float, float, float]:
    """``x' = alpha x + (1 - alpha) gray``."""
    return alpha, 1.0 - alpha, 0.0


#: The jitter ops in the original's list order (the order is shuffled per sample).
COLOR_JITTER_OPS: tuple[_ColorOp, ...] = (_brightness, _contrast, _saturation)


def check_channel_order(channel_order: str) -> str:
    """Return ``channel_order`` if it is one of :data:`CHANNEL_ORDERS`, else raise ``ValueError``."""
    if channel_order not in CHANNEL_ORDERS:
        raise ValueError(f"channel_order must be one of {CHANNEL_ORDERS}, got {channel_order!r}")
    return channel_order


def channel_permutation(channel_order: str) -> np.ndarray:
    """Return the ``[3, 3]`` float64 matrix taking a BGR pixel to ``channel_order``."""
    eye = np.eye(_NUM_CHANNELS, dtype=np.float64)
    return eye[::-1].copy() if check_channel_order(channel_order) == "rgb" else eye


def to_channel_order(image_bgr: np.ndarray, channel_order: str) -> np.ndarray:
    """Return a ``[H, W, 3]`` uint8 BGR image in ``channel_order`` (the input itself for ``"bgr"``)."""
    if check_channel_order(channel_order) == "rgb":
        return cv2.cvtColor(image_bgr, cv2.COLOR_BGR2RGB)
    return image_bgr


def sample_color_matrix(
    image_bgr: np.ndarray,
    rng: np.random.Generator,
    *,
    jitter_strength: float = COLOR_JITTER_STRENGTH,
    lighting_std: float = PCA_LIGHTING_STD,
    eigenvalues: np.ndarray = IMAGENET_PCA_EIGENVALUES,
    eigenvectors: np.ndarray = IMAGENET_PCA_EIGENVECTORS,
) -> np.ndarray:
    """Draw one colour augmentation and return it as a BGR -> BGR colour matrix.

    Draw order (as the original): the op order (a permutation of brightness, contrast, saturation),
    one ``U(-v, v)`` per op in that order, then three ``N(0, lighting_std)`` lighting coefficients.
    A zero ``jitter_strength`` or ``lighting_std`` skips that part and its draws.

    Args:
        image_bgr: ``[H, W, 3]`` uint8 BGR image the augmentation is for (its gray mean is used).
        rng: source of every random draw.
        jitter_strength: ``v`` of ``alpha = 1 + U(-v, v)``; 0 disables brightness/contrast/saturation.
        lighting_std: std of the PCA lighting coefficients; 0 disables lighting.
        eigenvalues: ``[3]`` PCA eigen-values in ``/255`` units.
        eigenvectors: ``[3, 3]`` PCA eigen-vectors (row = image channel in BGR order, as the original).

    Returns:
        ``[3, 4]`` float64 matrix ``[M | t]`` with ``x' = M x + t`` per BGR pixel, in uint8 units.
    """
    scale, gray_coef, offset = 1.0, 0.0, np.zeros(_NUM_CHANNELS, dtype=np.float64)
    if jitter_strength > 0:
        channel_means = np.asarray(cv2.mean(image_bgr)[:_NUM_CHANNELS], dtype=np.float64)
        gray_mean = float(GRAY_WEIGHTS_BGR @ channel_means)
        for op_index in rng.permutation(len(COLOR_JITTER_OPS)):
            alpha = 1.0 + rng.uniform(-jitter_strength, jitter_strength)
            a, b, c = COLOR_JITTER_OPS[op_index](alpha, gray_mean)
            scale, gray_coef, offset = a * scale, a * gray_coef + b, a * offset + c
    if lighting_std > 0:
        coefficients = rng.normal(scale=lighting_std, size=_NUM_CHANNELS)
        shift = eigenvectors.astype(np.float64) @ (eigenvalues.astype(np.float64) * coefficients)  # [3]
        offset = offset + PIXEL_MAX * shift
    linear = scale * np.eye(_NUM_CHANNELS) + gray_coef * np.outer(np.ones(_NUM_CHANNELS), GRAY_WEIGHTS_BGR)
    return np.concatenate([linear, offset[:, None]], axis=1)


def apply_color_matrix(image: np.ndarray, matrix: np.ndarray, channel_order: str = "bgr") -> np.ndarray:
    """Apply a ``[3, 4]`` BGR colour matrix to a uint8 BGR image in one saturating pass.

    Args:
        image: ``[H, W, 3]`` uint8 BGR image.
        matrix: ``[3, 4]`` matrix from :func:`sample_color_matrix`.
        channel_order: output channel order, folded into the matrix.

    Returns:
        ``[H, W, 3]`` uint8 image in ``channel_order``, rounded and saturated to [0, 255].
    """
    permuted = channel_permutation(channel_order) @ matrix  # [3, 4]
    return cv2.transform(image, permuted)
