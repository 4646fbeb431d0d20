"""Make a clean photograph look like an archival print and its scan.

A print is a float gray image in [0, 1] with a faded tone curve and brightness-dependent, spatially correlated
film grain. A scan of a print adds scan blur, dust and scratches, an optional halftone screen, a sepia or gray
rendering and a file format (JPEG at some quality, or lossless). Every random choice comes from the caller's
``numpy.random.Generator``, so a seed fixes the result.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import cv2
import numpy as np

from retouch.imaging import to_gray_float


def grain_sigma(brightness: np.ndarray, strength: float) -> np.ndarray:
    """Standard deviation of film grain at each brightness: strongest in the mid-tones, weaker at the ends."""
    return strength * (0.35 + 2.6 * brightness * (1.0 - brightness))


def grain_field(shape: tuple[int, int], rng: np.random.Generator, *, correlation: float) -> np.ndarray:
    """Unit-variance Gaussian noise blurred to grain of ``correlation`` pixels (clumped silver grains)."""
    noise = rng.standard_normal(shape).astype(np.float32)
    if correlation > 0:
        noise = cv2.GaussianBlur(noise, (0, 0), correlation)
        noise /= max(float(noise.std()), 1e-6)
    return noise


def add_grain(image: np.ndarray, rng: np.random.Generator, *, strength: float, correlation: float,
              weight: np.ndarray | float = 1.0) -> np.ndarray:
    """Add brightness-dependent film grain (optionally weighted per pixel by ``weight`` in [0, 1])."""
    field = grain_field(image.shape[:2], rng, correlation=correlation)
    return np.clip(image + grain_sigma(image, strength) * field * weight, 0.0, 1.0).astype(np.float32)


def fit_size(image: np.ndarray, size: int) -> np.ndarray:
    """Resize so the longest side is ``size`` pixels (area interpolation when shrinking)."""
    height, width = image.shape[:2]
    scale = size / max(height, width)
    if abs(scale - 1.0) < 1e-9:
        return image
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
    return cv2.resize(image, (max(1, round(width * scale)), max(1, round(height * scale))),
                      interpolation=interpolation)


@dataclass(frozen=True)
class PrintStyle:
    """How the photographic print was made and has aged."""

    black: float = 0.10
    white: float = 0.90
    gamma: float = 1.0
    grain: float = 0.035
    grain_correlation: float = 0.9

    @classmethod
    def random(cls, rng: np.random.Generator) -> PrintStyle:
        return cls(black=float(rng.uniform(0.05, 0.18)), white=float(rng.uniform(0.80, 0.95)),
                   gamma=float(rng.uniform(0.8, 1.25)), grain=float(rng.uniform(0.025, 0.05)),
                   grain_correlation=float(rng.uniform(0.7, 1.3)))

    def to_dict(self) -> dict[str, float]:
        return {k: round(v, 4) for k, v in asdict(self).items()}


def make_print(photo: np.ndarray, rng: np.random.Generator, *, size: int, style: PrintStyle) -> np.ndarray:
    """The photograph as an aged print: gray, faded tone curve, film grain. float32 in [0, 1]."""
    gray = fit_size(to_gray_float(photo), size)
    toned = style.black + (style.white - style.black) * np.power(np.clip(gray, 0, 1), style.gamma)
    return add_grain(toned.astype(np.float32), rng, strength=style.grain, correlation=style.grain_correlation)


@dataclass(frozen=True)
class ScanStyle:
    """How a print was scanned or re-photographed and stored."""

    blur: float = 0.6
    sepia: bool = False
    dust: int = 12
    scratches: int = 1
    halftone: bool = False
    scan_noise: float = 0.006
    jpeg_quality: int | None = 90

    @classmethod
    def random(cls, rng: np.random.Generator, *, lossless_chance: float = 0.25) -> ScanStyle:
        lossless = bool(rng.random() < lossless_chance)
        return cls(blur=float(rng.uniform(0.3, 0.9)), sepia=bool(rng.random() < 0.5),
                   dust=int(rng.integers(4, 25)), scratches=int(rng.integers(0, 3)),
                   halftone=bool(rng.random() < 0.1), scan_noise=float(rng.uniform(0.003, 0.01)),
                   jpeg_quality=None if lossless else int(rng.integers(75, 96)))

    @classmethod
    def clean(cls) -> ScanStyle:
        """No blur, dust, noise or compression: for exact ground-truth checks."""
        return cls(blur=0.0, sepia=False, dust=0, scratches=0, halftone=False, scan_noise=0.0, jpeg_quality=None)

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def _dust_and_scratches(image: np.ndarray, rng: np.random.Generator, style: ScanStyle) -> np.ndarray:
    height, width = image.shape
    canvas = image.copy()
    for _ in range(style.dust):
        centre = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        radius = int(rng.integers(1, max(2, min(height, width) // 180 + 2)))
        shade = float(rng.choice([0.02, 0.98]))
        cv2.circle(canvas, centre, radius, shade, -1, lineType=cv2.LINE_AA)
    for _ in range(style.scratches):
        x0 = int(rng.integers(0, width))
        x1 = int(np.clip(x0 + rng.integers(-width // 20, width // 20 + 1), 0, width - 1))
        cv2.line(canvas, (x0, 0), (x1, height - 1), 0.95, 1, lineType=cv2.LINE_AA)
    return canvas


def _halftone(image: np.ndarray, period: int = 4) -> np.ndarray:
    """A rotated-dot screen, as in a photograph reproduced in print and scanned back."""
    height, width = image.shape
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    angle = np.deg2rad(45.0)
    u = (xx * np.cos(angle) + yy * np.sin(angle)) * (2 * np.pi / period)
    v = (-xx * np.sin(angle) + yy * np.cos(angle)) * (2 * np.pi / period)
    screen = 0.5 + 0.25 * (np.cos(u) + np.cos(v))
    dots = (image > screen).astype(np.float32)
    return cv2.GaussianBlur(dots, (0, 0), period / 3.0) * 0.7 + image * 0.3


def sepia(gray: np.ndarray) -> np.ndarray:
    """Tint a gray image [0, 1] sepia; returns float RGB."""
    tint = np.array([1.0, 0.86, 0.66], np.float32)
    return np.clip(gray[:, :, None] * tint[None, None, :] + np.array([0.04, 0.02, 0.0], np.float32), 0, 1)


def scan(print_image: np.ndarray, rng: np.random.Generator, style: ScanStyle) -> tuple[np.ndarray, bytes, str]:
    """Scan a print: returns (decoded uint8 pixels, file bytes, file format "JPEG" or "PNG")."""
    image = print_image.astype(np.float32)
    if style.blur > 0:
        image = cv2.GaussianBlur(image, (0, 0), style.blur)
    if style.halftone:
        image = _halftone(image)
    image = _dust_and_scratches(image, rng, style)
    if style.scan_noise > 0:
        image = image + rng.normal(0.0, style.scan_noise, image.shape).astype(np.float32)
    image = np.clip(image, 0.0, 1.0)
    pixels = sepia(image) if style.sepia else image
    pixels = np.round(pixels * 255.0).astype(np.uint8)
    return encode(pixels, style.jpeg_quality)


def encode(pixels: np.ndarray, jpeg_quality: int | None) -> tuple[np.ndarray, bytes, str]:
    """Store ``pixels`` as JPEG (quality given) or PNG; returns the decoded pixels, bytes and format."""
    bgr = cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR) if pixels.ndim == 3 else pixels
    if jpeg_quality is None:
        ok, buffer = cv2.imencode(".png", bgr)
        return pixels, buffer.tobytes(), "PNG"
    ok, buffer = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)])
    decoded = cv2.imdecode(buffer, cv2.IMREAD_UNCHANGED)
    if decoded.ndim == 3:
        decoded = cv2.cvtColor(decoded, cv2.COLOR_BGR2RGB)
    return decoded, buffer.tobytes(), "JPEG"
