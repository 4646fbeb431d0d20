"""Register two scans of one photograph: features, a robust model fit, sub-pixel refinement, a fallback.

Method
------
SIFT keypoints (Lowe 2004) on contrast-normalised copies at a bounded resolution, Lowe's ratio test (exact
nearest neighbours), and a robust fit with MAGSAC++ (Barath et al. 2020, OpenCV's ``USAC_MAGSAC``) of a
similarity, an affine and a homography model; the simplest model whose residuals on the homography's inliers are
as tight, or that Torr's GRIC prefers, wins, and the inliers required scale with its number of parameters. A
mirrored print is found by matching the mirrored questioned image too. The winner seeds enhanced correlation
coefficient maximisation (Evangelidis & Psarakis 2008, ``cv2.findTransformECC``) of a homography on a two-level
pyramid; a refinement that moves any corner by more than a few pixels is rejected, so a large edit cannot drag
the fit. Without enough features, a Fourier-Mellin fallback (log-polar phase correlation, Reddy & Chatterji
1996) recovers rotation, scale and translation. Pairs that do not register, or whose aligned overlap does not
correlate, are refused as not the same photograph. A pair that does not register as it is is tried once more
with the reference's tones inverted, on features alone: a scanned film negative, not turned positive, registers
with its print only so (SIFT's gradients point the other way), and is then compared as a positive.

Limits: strong non-rigid distortion (a print that was bent when re-photographed) is modelled only by a
homography; mirror detection needs features on both sides.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import cv2
import numpy as np

from retouch.errors import NotSamePhotographError
from retouch.imaging import bounded, inverted_tones, nearest_neighbours, to_gray_float

FEATURE_PIXELS = 1_200_000
MIN_INLIERS = 20  # for a homography; a model with fewer parameters needs proportionally fewer (a similarity 10)
MIN_INLIER_RATIO = 0.12
MIN_OVERLAP_CORRELATION = 0.35
SMALL_SIDE = 256  # longest side (px) below which feature detection adapts its normalisation to the image size
MIN_CLAHE_TILE = 32  # px; smaller equalisation tiles amplify grain more than they reveal features
# The Fourier-Mellin fallback has no inlier count to vouch for it, only the aligned overlap's correlation. On a
# small image the smoothed overlap holds few independent samples, so chance agreement runs high: on generated
# pairs of 64-128 px prints, different photographs aligned at 0.60-0.75 and wrong alignments of one photograph
# (20-130 px off) at 0.61-0.80, while right ones mostly reached 0.8-0.93. Below SMALL_SIDE the bar is raised,
# and below MIN_FALLBACK_SIDE on a short side the spectrum holds too few frequencies to try at all.
FALLBACK_CORRELATION = 0.6
SMALL_FALLBACK_CORRELATION = 0.8
MIN_FALLBACK_SIDE = 32
# The smoothed overlap measures layout: different photographs of similar layout (a page of text, a silhouette,
# a dark sky) aligned by the fallback at 0.60-0.78 at 256 px (8 of 56 ordered pairs of 8 scikit-image photographs).
# Their fine detail (a 1-4 px band) did not agree (correlation 0.02-0.16), while every generated pair of one
# photograph the fallback aligned agreed at 0.47-0.91 (31 pairs at 64 and 96 px, 3 at 128 and 256 px).
MIN_FALLBACK_DETAIL_CORRELATION = 0.3


@dataclass
class Registration:
    """How the reference was mapped onto the questioned image, and how well."""

    transform: np.ndarray  # 3x3, reference pixel -> questioned pixel, full resolution
    model: str
    method: str
    mirrored: bool
    matches: int
    inliers: int
    inlier_ratio: float
    residual_px: float
    rotation_deg: float
    scale: float
    refined: bool
    overlap_correlation: float = float("nan")
    timings_s: dict[str, float] = field(default_factory=dict)
    inverted: bool = False  # the reference registered only as a negative (its tones inverted)
    inlier_cover: float = float("nan")  # share of the overlap (questioned frame) the inlier matches' hull covers

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["transform"] = np.asarray(self.transform, float).round(8).tolist()
        for key in ("inlier_ratio", "residual_px", "rotation_deg", "scale", "overlap_correlation", "inlier_cover"):
            value = float(data[key])
            data[key] = round(value, 4) if np.isfinite(value) else None  # e.g. no residual without matches
        return data


@dataclass
class FeatureFit:
    """A geometric model fitted to matched points (at matching resolution): its name and 3x3 map (reference ->
    questioned), how many matches it had and kept, their median residual, whether the questioned image was
    matched mirrored, the inlier matches themselves (``anchors``) and the residual tolerance used."""

    model: str
    h: np.ndarray
    inliers: int
    matches: int
    residual: float
    mirrored: bool
    anchors: tuple[np.ndarray, np.ndarray] | None = None
    tolerance: float = 2.0


@dataclass
class _Prepared:
    """Both images at matching resolution: gray, the scales they were shrunk by, the normalised copies ECC and
    the checks use and the copies features are detected on (size-aware for small images)."""

    ref_small: np.ndarray
    q_small: np.ndarray
    ref_scale: float
    q_scale: float
    ref8: np.ndarray
    q8: np.ndarray
    ref_features: np.ndarray
    q_features: np.ndarray


def normalise_for_matching(image: np.ndarray, *, size_aware: bool = False) -> np.ndarray:
    """uint8 gray, grain softened and local contrast equalised (CLAHE), so tone and fading do not hide features.

    ``size_aware``: below SMALL_SIDE pixels on the longest side, soften less and use fewer, larger CLAHE tiles
    (for feature detection). A fixed 8x8 grid on a 60 px thumbnail equalises 7 px tiles, which turns grain into
    contrast and drowns the descriptors, and a 1 px blur removes a larger share of a thumbnail's detail; on 24
    generated pairs at each of 96-256 px this gave 18-50 % more correct matches. Images of SMALL_SIDE and more
    are normalised exactly as without it.
    """
    gray = to_gray_float(image)
    sigma, grid = 1.0, 8
    if size_aware:
        side = max(gray.shape[:2])
        sigma = float(np.clip(side / SMALL_SIDE, 0.7, 1.0))
        grid = int(np.clip(side // MIN_CLAHE_TILE, 1, 8))
    gray = cv2.GaussianBlur(gray, (0, 0), sigma)
    lo, hi = np.percentile(gray, [0.5, 99.5])
    stretched = np.clip((gray - lo) / max(hi - lo, 1e-6), 0, 1)
    eight = np.round(stretched * 255).astype(np.uint8)
    return cv2.createCLAHE(clipLimit=2.0, tileGridSize=(grid, grid)).apply(eight)


def _scale_matrix(scale: float) -> np.ndarray:
    return np.diag([scale, scale, 1.0])


def _detect(gray8: np.ndarray) -> tuple[list[cv2.KeyPoint], np.ndarray | None]:
    sift = cv2.SIFT_create(nfeatures=5000, contrastThreshold=0.02)
    return sift.detectAndCompute(gray8, None)


def _ratio_matches(desc_a: np.ndarray, desc_b: np.ndarray, ratio: float = 0.8) -> tuple[np.ndarray, np.ndarray]:
    """Indices into ``desc_a`` and ``desc_b`` of the pairs passing Lowe's ratio test."""
    if desc_a is None or desc_b is None or len(desc_a) < 2 or len(desc_b) < 2:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    # exact nearest neighbours: FLANN's randomised trees draw on OpenCV's global RNG, so the matches (and with few
    # inliers, the fit) changed from run to run; exact search is deterministic
    nearest, distance = nearest_neighbours(desc_a, desc_b, 2)
    passed = np.flatnonzero(distance[:, 0].astype(np.float64) < ratio * distance[:, 1].astype(np.float64))
    return passed, nearest[passed, 0]


def _to_h(matrix: np.ndarray) -> np.ndarray:
    return np.vstack([matrix, [0, 0, 1]]) if matrix.shape == (2, 3) else matrix


def _invertible(h: np.ndarray) -> bool:
    """Whether ``h`` can map one scan of a print onto another: finite, and its linear part neither collapses the
    frame nor blows it up beyond any re-photographing (OpenCV's robust fits can return an all-zero linear part
    when their sampling fails, which was once chosen and then broke the refinement with a singular matrix)."""
    if not np.all(np.isfinite(h)) or abs(h[2, 2]) < 1e-12:
        return False
    area_scale = abs(float(np.linalg.det(h[:2, :2] / h[2, 2])))
    return 1e-3 < area_scale < 1e3


def _fit_models(src: np.ndarray, dst: np.ndarray, threshold: float) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """Similarity, affine and (from 8 matches) homography fits of ``src`` -> ``dst``, simplest first, each with its
    inlier flags; fits that are not invertible maps are left out."""
    fits = []
    similarity, inl = cv2.estimateAffinePartial2D(src, dst, method=cv2.RANSAC, ransacReprojThreshold=threshold,
                                                  maxIters=4000, confidence=0.999)
    if similarity is not None:
        fits.append(("similarity", _to_h(similarity), inl.ravel().astype(bool)))
    affine, inl = cv2.estimateAffine2D(src, dst, method=cv2.RANSAC, ransacReprojThreshold=threshold,
                                       maxIters=4000, confidence=0.999)
    if affine is not None:
        fits.append(("affine", _to_h(affine), inl.ravel().astype(bool)))
    if len(src) >= 8:
        # MAGSAC++ is usually the better estimator but, being randomised, can miss on a given run; RANSAC is
        # run beside it and the fit with more inliers is kept, then polished by least squares on its inliers.
        best = None
        for method in (cv2.USAC_MAGSAC, cv2.RANSAC):
            homography, _ = cv2.findHomography(src, dst, method, threshold, maxIters=5000, confidence=0.999)
            if homography is None:
                continue
            inliers = _residuals(homography, src, dst) < threshold
            if best is None or inliers.sum() > best[1].sum():
                best = (homography, inliers)
        if best is not None:
            homography, inliers = best
            if inliers.sum() >= 8:
                polished, _ = cv2.findHomography(src[inliers], dst[inliers], 0)
                if polished is not None and (_residuals(polished, src, dst) < threshold).sum() >= inliers.sum():
                    homography = polished
                    inliers = _residuals(polished, src, dst) < threshold
            fits.append(("homography", homography, inliers))
    return [fit for fit in fits if _invertible(fit[1])]


def _residuals(h: np.ndarray, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    mapped = cv2.perspectiveTransform(src.reshape(-1, 1, 2), h).reshape(-1, 2)
    return np.hypot(*(mapped - dst).T)


_MODEL_PARAMETERS = {"similarity": 4, "affine": 6, "homography": 8}


def _gric(residual: np.ndarray, sigma: float, parameters: int, count: int) -> float:
    """Torr's geometric robust information criterion for a 2D->2D map: capped squared residuals plus log(4 n)
    per parameter (data dimension 4, model manifold dimension 2)."""
    return float(np.minimum((residual / sigma) ** 2, 4.0).sum() + np.log(4.0 * count) * parameters)


def _choose_model(fits, src, dst, threshold):
    """Similarity, then affine, then homography: the first model that fits the homography's inliers tightly.

    A re-photographed print is rarely parallel to the film plane, so a simpler model is kept when 90 % of the
    homography's inliers lie within 1 px of it (at matching resolution), or when it explains those matches as well
    as the richer model once the extra parameters are paid for (GRIC, Torr 1998; noise from the richest fit's
    residuals). With few, noisy matches the 1 px test fails for every model and a homography fitted to a dozen
    points would win although it bends the frame by pixels away from them.
    """
    richest_name, richest_h, _ = fits[-1]
    support = _residuals(richest_h, src, dst) < threshold
    count = int(support.sum())
    scores = {}
    if count > _MODEL_PARAMETERS.get(richest_name, 8):
        rich_residual = _residuals(richest_h, src[support], dst[support])
        dof = count - _MODEL_PARAMETERS.get(richest_name, 8) / 2  # each match gives two equations
        sigma = max(float(np.sqrt(np.sum(rich_residual ** 2) / dof)), 0.25)
        for name, h, _ in fits:
            scores[name] = _gric(_residuals(h, src[support], dst[support]), sigma, _MODEL_PARAMETERS[name], count)
    for name, h, _ in fits:  # ordered simple to rich
        residual = _residuals(h, src[support], dst[support])
        explains = name in scores and scores[name] <= min(scores.values())
        if residual.size and (np.percentile(residual, 90) <= 1.0 or explains or name == richest_name):
            inliers = _residuals(h, src, dst) < threshold
            return name, h, inliers, float(np.median(residual))
    return richest_name, richest_h, support, float(np.median(_residuals(richest_h, src[support], dst[support])))


def _feature_registration(ref8: np.ndarray, q8: np.ndarray) -> FeatureFit | None:
    keys_r, desc_r = _detect(ref8)
    best = None
    width = q8.shape[1]
    for mirrored in (False, True):
        query = q8[:, ::-1] if mirrored else q8
        keys_q, desc_q = _detect(np.ascontiguousarray(query))
        from_reference, from_questioned = _ratio_matches(desc_r, desc_q)
        if len(from_reference) < 6:
            continue
        src = np.float32([keys_r[i].pt for i in from_reference])
        dst = np.float32([keys_q[i].pt for i in from_questioned])
        if mirrored:
            dst[:, 0] = (width - 1) - dst[:, 0]
        threshold = max(2.0, 0.003 * max(q8.shape))
        fits = _fit_models(src, dst, threshold)
        if not fits:
            continue
        name, h, inliers, median = _choose_model(fits, src, dst, threshold)
        candidate = FeatureFit(model=name, h=h, inliers=int(inliers.sum()), matches=len(from_reference),
                               residual=median, mirrored=mirrored, anchors=(src[inliers], dst[inliers]),
                               tolerance=threshold)
        if best is None or candidate.inliers > best.inliers:
            best = candidate
    return best


def _phase_shift(fixed: np.ndarray, moving: np.ndarray) -> tuple[float, float]:
    """The (row, column) shift that best aligns ``moving`` onto ``fixed``, by phase correlation.

    scikit-image also computes an RMS error, unused here, and warns when an image is flat (a blank or tiny
    scan); the shift is still returned and the candidates are judged by correlation afterwards.
    """
    from skimage.registration import phase_cross_correlation

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Could not determine RMS error", category=UserWarning)
        shift, _, _ = phase_cross_correlation(fixed, moving, upsample_factor=10, normalization=None)
    return float(shift[0]), float(shift[1])


def _log_polar_fallback(ref: np.ndarray, q: np.ndarray) -> np.ndarray | None:
    """Fourier-Mellin: rotation and scale from the log-polar magnitude spectra, then translation.

    The magnitude spectrum ignores translation; in log-polar coordinates a rotation becomes a shift along the
    angle axis and a scaling a shift along log-radius (the spectrum scales inversely to the image). The
    spectrum's 180-degree symmetry leaves two candidate rotations, and the scale estimate is refined by a search
    on a log grid; the candidate whose aligned images correlate best wins.
    """
    from skimage.transform import warp_polar

    size = 512
    side = max(ref.shape + q.shape)
    factor = size / side
    canvases, tapered = [], []
    for img in (to_gray_float(ref), to_gray_float(q)):
        small = cv2.resize(img, None, fx=factor, fy=factor, interpolation=cv2.INTER_AREA)
        canvas = np.zeros((size, size), np.float32)
        canvas[: small.shape[0], : small.shape[1]] = small - small.mean()
        canvases.append(canvas)
        # taper each image inside its own frame so its borders do not dominate the spectrum
        window = np.outer(np.hanning(small.shape[0]), np.hanning(small.shape[1])).astype(np.float32)
        taper = np.zeros((size, size), np.float32)
        taper[: small.shape[0], : small.shape[1]] = (small - small.mean()) * window
        tapered.append(taper)
    spectra = [np.abs(np.fft.fftshift(np.fft.fft2(t))) for t in tapered]
    radius = size // 2
    polar = [warp_polar(np.log1p(spectrum), radius=radius, output_shape=(360, radius), scaling="log")
             for spectrum in spectra]
    band = slice(radius // 20, (3 * radius) // 4)  # no DC, not the noisiest frequencies
    angle_shift, log_shift = _phase_shift(polar[0][:, band], polar[1][:, band])
    estimated = float(np.exp(-log_shift / (radius / np.log(radius))))
    # the radial shift is the weaker estimate (windowing and cropping blur it), so scales are also searched on a
    # log grid and every candidate is judged by how well the aligned images correlate
    scales = [estimated] if 0.3 < estimated < 3.5 else []
    scales += list(np.geomspace(0.5, 2.0, 41))
    best, best_score = None, -np.inf
    for angle, scale in ((a, sc) for a in (float(angle_shift), float(angle_shift) + 180.0) for sc in scales):
        rotation = _to_h(cv2.getRotationMatrix2D((size / 2, size / 2), angle, float(scale)))
        rotated = cv2.warpPerspective(canvases[0], rotation, (size, size))
        dy, dx = _phase_shift(canvases[1], rotated)
        candidate = np.array([[1, 0, dx], [0, 1, dy], [0, 0, 1]]) @ rotation
        aligned = cv2.warpPerspective(canvases[0], candidate, (size, size))
        overlap = (aligned != 0) & (canvases[1] != 0)
        if overlap.sum() < 100:
            continue
        with np.errstate(invalid="ignore", divide="ignore"):
            score = float(np.nan_to_num(np.corrcoef(aligned[overlap], canvases[1][overlap])[0, 1], nan=-1.0))
        if score > best_score:
            best, best_score = candidate, score
    if best is None:
        return None
    return np.linalg.inv(_scale_matrix(factor)) @ best @ _scale_matrix(factor)


def _corner_shift(h_a: np.ndarray, h_b: np.ndarray, shape: tuple[int, int]) -> float:
    height, width = shape
    corners = np.float32([[0, 0], [width, 0], [width, height], [0, height]]).reshape(-1, 1, 2)
    return float(np.max(np.hypot(*(cv2.perspectiveTransform(corners, h_a)
                                   - cv2.perspectiveTransform(corners, h_b)).reshape(-1, 2).T)))


def _ecc_pyramid(ref_f: np.ndarray, q_f: np.ndarray, h: np.ndarray, motion: int) -> np.ndarray | None:
    """ECC (ref -> q) with ``motion`` on a two-level pyramid, or ``None`` where it does not converge."""
    current = h.copy()
    criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 60, 1e-5)
    try:
        for level in (0.5, 1.0):
            down = _scale_matrix(level)
            template = cv2.resize(q_f, None, fx=level, fy=level, interpolation=cv2.INTER_AREA) if level < 1 else q_f
            source = cv2.resize(ref_f, None, fx=level, fy=level, interpolation=cv2.INTER_AREA) if level < 1 else ref_f
            # ECC's warp maps template coordinates to input coordinates: here questioned -> reference
            warp_q_to_r = down @ np.linalg.inv(current) @ np.linalg.inv(down)
            warp_q_to_r /= warp_q_to_r[2, 2]
            matrix = warp_q_to_r if motion == cv2.MOTION_HOMOGRAPHY else warp_q_to_r[:2].copy()
            _, matrix = cv2.findTransformECC(template, source, matrix.astype(np.float32), motion, criteria, None, 5)
            refined_q_to_r = _to_h(matrix.astype(np.float64))
            current = np.linalg.inv(np.linalg.inv(down) @ refined_q_to_r @ down)
            current /= current[2, 2]
    except (cv2.error, np.linalg.LinAlgError):  # no convergence, or a degenerate warp
        return None
    return current


def _ecc_refine(ref8: np.ndarray, q8: np.ndarray, h: np.ndarray, model: str, *, max_shift: float = 8.0,
                anchors: tuple[np.ndarray, np.ndarray] | None = None, tolerance: float = 2.0
                ) -> tuple[np.ndarray, bool]:
    """ECC refinement of ``h`` (ref -> q); rejected if it moves a corner by more than ``max_shift`` pixels (a
    sound feature fit is never that far off; a larger move means ECC chased an edit), unless it still carries
    the feature fit's inlier matches (``anchors``, at least 12) within ``tolerance``: a similarity fitted to the
    matches of a keystoned print can be 10 px off at the corners, and the homography that corrects it keeps every
    match, whereas a warp chasing an edit drags matches away.

    ECC first refines a full homography, whatever ``model`` the matches supported: a few noisy matches may only
    justify a similarity, but the dense correlation over the whole overlap can recover the print's slight keystone
    too. Where that does not converge (a halftone screen gives ECC many false optima), a start from a similarity
    or affine fit is refined as an affine map instead."""
    ref_f = cv2.GaussianBlur(ref8.astype(np.float32) / 255.0, (0, 0), 1.0)
    q_f = cv2.GaussianBlur(q8.astype(np.float32) / 255.0, (0, 0), 1.0)
    motions = [cv2.MOTION_HOMOGRAPHY] + ([cv2.MOTION_AFFINE] if model != "homography" else [])
    for motion in motions:
        current = _ecc_pyramid(ref_f, q_f, h, motion)
        if current is None:
            continue
        if _corner_shift(current, h, q8.shape) <= max_shift or _keeps_anchors(current, anchors, tolerance):
            return current, True
    return h, False


def _keeps_anchors(h: np.ndarray, anchors: tuple[np.ndarray, np.ndarray] | None, tolerance: float) -> bool:
    """Whether ``h`` maps 90 % of at least 12 matched points within ``tolerance`` pixels of their matches."""
    if anchors is None or len(anchors[0]) < 12:
        return False
    return float(np.percentile(_residuals(h, *anchors), 90)) <= tolerance


def _warped_onto(ref: np.ndarray, shape: tuple[int, int], h: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``ref`` warped by ``h`` into a frame of ``shape``, and where it lands (bool)."""
    height, width = shape
    warped = cv2.warpPerspective(ref, h, (width, height), flags=cv2.INTER_LINEAR)
    valid = cv2.warpPerspective(np.ones(ref.shape[:2], np.uint8), h, (width, height), flags=cv2.INTER_NEAREST) > 0
    return warped, valid


def overlap_correlation(ref: np.ndarray, q: np.ndarray, h: np.ndarray) -> float:
    """Correlation of the smoothed, contrast-normalised images over their overlap after warping."""
    height, width = q.shape[:2]
    warped, valid = _warped_onto(ref, q.shape[:2], h)
    if valid.sum() < 0.05 * height * width:
        return 0.0
    a = cv2.GaussianBlur(warped.astype(np.float32), (0, 0), 2.0)[valid]
    b = cv2.GaussianBlur(q.astype(np.float32), (0, 0), 2.0)[valid]
    # rank correlation: insensitive to any monotone tone difference between the scans
    ra = np.argsort(np.argsort(a)).astype(np.float64)
    rb = np.argsort(np.argsort(b)).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        correlation = float(np.corrcoef(ra, rb)[0, 1])
    return correlation if np.isfinite(correlation) else 0.0  # a featureless image correlates with nothing


def detail_correlation(ref: np.ndarray, q: np.ndarray, h: np.ndarray) -> float:
    """Correlation of the images' fine detail (a 1-4 px band-pass) over their overlap after warping, the band's
    reach in from the overlap's edge left out where the overlap is large enough."""
    warped, valid = _warped_onto(ref, q.shape[:2], h)
    inner = cv2.erode(valid.view(np.uint8), np.ones((9, 9), np.uint8)) > 0
    valid = inner if inner.sum() >= 64 else valid

    def band(image: np.ndarray) -> np.ndarray:
        image = image.astype(np.float32)
        return cv2.GaussianBlur(image, (0, 0), 1.0) - cv2.GaussianBlur(image, (0, 0), 4.0)

    a, b = band(warped)[valid].astype(np.float64), band(q)[valid].astype(np.float64)
    a, b = a - a.mean(), b - b.mean()
    denominator = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / denominator) if denominator > 0 else 0.0


def register(reference: np.ndarray, questioned: np.ndarray, *, feature_pixels: int = FEATURE_PIXELS,
             refine: bool = True) -> Registration:
    """Estimate the homography mapping ``reference`` pixels to ``questioned`` pixels (full resolution).

    A reference that registers only with its tones inverted (a film negative) gives ``inverted=True``.

    Raises :class:`~retouch.errors.NotSamePhotographError` when the images do not show the same photograph, as
    they are or with the reference inverted (the first attempt's reason is given).
    """
    try:
        return _register_as_is(reference, questioned, feature_pixels=feature_pixels, refine=refine)
    except NotSamePhotographError as error:
        try:
            # features only: the feature-free fallback, given a second chance with the tones turned over,
            # accepted a 64 px camera against a coins print (1 of 33 different pairs in benchmarks/thumbnails)
            found = _register_as_is(inverted_tones(reference), questioned, feature_pixels=feature_pixels,
                                    refine=refine, fallback=False)
        except NotSamePhotographError:
            raise error from None
        return replace(found, inverted=True)


def _prepare(reference: np.ndarray, questioned: np.ndarray, feature_pixels: int) -> _Prepared:
    ref_small, ref_scale = bounded(to_gray_float(reference), feature_pixels)
    q_small, q_scale = bounded(to_gray_float(questioned), feature_pixels)
    ref8, q8 = normalise_for_matching(ref_small), normalise_for_matching(q_small)
    # a small image gets its own, size-aware copy for features (same pixel frame); the fallback, ECC and the
    # correlation check keep the fixed normalisation their thresholds were set on
    ref_features = ref8 if max(ref8.shape) >= SMALL_SIDE else normalise_for_matching(ref_small, size_aware=True)
    q_features = q8 if max(q8.shape) >= SMALL_SIDE else normalise_for_matching(q_small, size_aware=True)
    return _Prepared(ref_small=ref_small, q_small=q_small, ref_scale=ref_scale, q_scale=q_scale, ref8=ref8, q8=q8,
                     ref_features=ref_features, q_features=q_features)


def _enough(found: FeatureFit | None) -> bool:
    """Whether a feature fit has the inliers its model needs: random matches agree with a 4-parameter similarity
    far more rarely than with an 8-parameter homography, so the inliers required scale with the model's
    parameters (a dozen matches on one similarity are no chance)."""
    return found is not None and found.inliers >= MIN_INLIERS * _MODEL_PARAMETERS[found.model] / 8 \
        and found.inliers >= MIN_INLIER_RATIO * found.matches


def _fallback_fit(prepared: _Prepared, found: FeatureFit | None, timings: dict[str, float]) -> FeatureFit:
    """The Fourier-Mellin estimate, for a pair whose features do not agree (or refusal)."""
    shortest = min(prepared.ref8.shape + prepared.q8.shape)
    if shortest < MIN_FALLBACK_SIDE:
        raise NotSamePhotographError(
            f"these images do not show the same photograph: too few consistent matches, and an image "
            f"{shortest} px across is too small to align without them")
    started = time.perf_counter()
    h_fallback = _log_polar_fallback(prepared.ref8, prepared.q8)
    timings["fallback"] = time.perf_counter() - started
    if h_fallback is None:
        raise NotSamePhotographError("these images do not show the same photograph: no consistent matches")
    return FeatureFit(model="similarity", h=h_fallback, inliers=0, matches=0 if found is None else found.matches,
                      residual=float("nan"), mirrored=False)


def _refined(prepared: _Prepared, found: FeatureFit, method: str) -> tuple[np.ndarray, bool]:
    """ECC refinement of the fit at matching resolution (see :func:`_ecc_refine`)."""
    ref8, q8 = prepared.ref8, prepared.q8
    h_small = found.h / found.h[2, 2]
    shift_limit = 8.0 if method != "fourier-mellin" else 30.0  # the feature-free start is coarser
    anchors = found.anchors
    if not found.mirrored:
        return _ecc_refine(ref8, q8, h_small, found.model, max_shift=shift_limit, anchors=anchors,
                           tolerance=found.tolerance)
    # refine in the mirrored questioned frame, where the map is a proper (orientation-keeping) warp
    flip = np.array([[-1.0, 0.0, q8.shape[1] - 1.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    if anchors is not None:
        anchors = (anchors[0], np.stack([q8.shape[1] - 1.0 - anchors[1][:, 0], anchors[1][:, 1]], 1))
    refined_h, refined = _ecc_refine(ref8, np.ascontiguousarray(q8[:, ::-1]), flip @ h_small, found.model,
                                     max_shift=shift_limit, anchors=anchors, tolerance=found.tolerance)
    return (np.linalg.inv(flip) @ refined_h if refined else h_small), refined


def _verified(prepared: _Prepared, h_small: np.ndarray, method: str) -> float:
    """The aligned overlap's correlation, or refusal when it (or, without features, the fine detail) does not
    agree. A feature-free estimate has no inlier count to vouch for it, so its overlap must correlate clearly,
    and more clearly on a small image (see SMALL_FALLBACK_CORRELATION)."""
    ref8, q8 = prepared.ref8, prepared.q8
    correlation = overlap_correlation(ref8, q8, h_small)
    needed = MIN_OVERLAP_CORRELATION
    if method == "fourier-mellin":
        small = max(q8.shape) < SMALL_SIDE  # the correlation is taken in the questioned frame
        needed = SMALL_FALLBACK_CORRELATION if small else FALLBACK_CORRELATION
    if correlation < needed:
        raise NotSamePhotographError(
            f"these images do not show the same photograph: aligned overlap correlates at {correlation:.2f}")
    if method == "fourier-mellin":
        detail = detail_correlation(ref8, q8, h_small)
        if detail < MIN_FALLBACK_DETAIL_CORRELATION:
            raise NotSamePhotographError(
                f"these images do not show the same photograph: aligned without matching features, their layouts "
                f"agree ({correlation:.2f}) but their fine detail does not ({detail:.2f})")
    return correlation


def overlap_share(outline: np.ndarray, transform: np.ndarray, reference_shape: tuple[int, int],
                  questioned_shape: tuple[int, int]) -> float:
    """The share of the registered overlap (where ``transform`` lands the reference's frame in the questioned one)
    that the polygon ``outline`` (questioned pixels) covers, measured on a grid of at most a quarter megapixel."""
    factor = min(1.0, float(np.sqrt(250_000 / (questioned_shape[0] * questioned_shape[1]))))
    shape = (max(1, round(questioned_shape[0] * factor)), max(1, round(questioned_shape[1] * factor)))
    height, width = reference_shape
    corners = cv2.perspectiveTransform(np.float32([[0, 0], [width, 0], [width, height], [0, height]])
                                       .reshape(-1, 1, 2), transform).reshape(-1, 2)
    overlap = np.zeros(shape, np.uint8)
    cv2.fillPoly(overlap, [np.round(corners * factor).astype(np.int32)], 1)
    covered = np.zeros(shape, np.uint8)
    cv2.fillPoly(covered, [np.round(np.asarray(outline, np.float64) * factor).astype(np.int32)], 1)
    return float((overlap & covered).sum()) / max(float(overlap.sum()), 1.0)


def _inlier_cover(found: FeatureFit, h_small: np.ndarray, reference_shape: tuple[int, int],
                  questioned_shape: tuple[int, int]) -> float:
    """The share of the registered overlap (at matching resolution) that the hull of the fit's inlier matches
    covers; NaN without inliers."""
    if found.anchors is None or len(found.anchors[1]) < 3:
        return float("nan")
    hull = cv2.convexHull(np.float32(found.anchors[1]).reshape(-1, 1, 2)).reshape(-1, 2)
    return overlap_share(hull, h_small, reference_shape, questioned_shape)


def _pixel_exact(h_full: np.ndarray, reference: np.ndarray, questioned: np.ndarray) -> np.ndarray:
    """``h_full``, or the whole-pixel translation it nearly is (every corner within two pixels) when, so
    translated, the two images agree to within compression over most of their overlap (median absolute
    difference under two grey levels): two files of one picture, one of them edited and saved again. Such files
    share their pixel grid; a fit a hundredth of a pixel off it interpolated the reference and made every edge of
    an untouched area differ a little (scans of a print differ by far more than two levels in most pixels)."""
    height, width = questioned.shape[:2]
    shift = np.round(h_full[:2, 2] / h_full[2, 2])
    translation = np.array([[1.0, 0.0, shift[0]], [0.0, 1.0, shift[1]], [0.0, 0.0, 1.0]])
    if _corner_shift(h_full, translation, (height, width)) > 2.0:
        return h_full
    dx, dy = int(shift[0]), int(shift[1])
    gray_r, gray_q = to_gray_float(reference), to_gray_float(questioned)
    # the overlap in questioned coordinates, where questioned (x, y) shows reference (x - dx, y - dy)
    top, left = max(dy, 0), max(dx, 0)
    bottom, right = min(height, gray_r.shape[0] + dy), min(width, gray_r.shape[1] + dx)
    if bottom - top < 16 or right - left < 16:
        return h_full
    exact = np.abs(gray_q[top:bottom, left:right] - gray_r[top - dy:bottom - dy, left - dx:right - dx])
    return translation if float(np.median(exact)) < 2.0 / 255.0 else h_full


def _register_as_is(reference: np.ndarray, questioned: np.ndarray, *, feature_pixels: int, refine: bool,
                    fallback: bool = True) -> Registration:
    """:func:`register` without the attempt on the inverted reference; without ``fallback``, a pair whose
    features do not agree is refused without trying the Fourier-Mellin fallback."""
    timings: dict[str, float] = {}
    started = time.perf_counter()
    prepared = _prepare(reference, questioned, feature_pixels)
    timings["prepare"] = time.perf_counter() - started
    started = time.perf_counter()
    found = _feature_registration(prepared.ref_features, prepared.q_features)
    timings["features_and_fit"] = time.perf_counter() - started
    method = "sift+magsac"
    if not _enough(found):
        if not fallback:
            raise NotSamePhotographError("these images do not show the same photograph: too few consistent matches")
        found = _fallback_fit(prepared, found, timings)
        method = "fourier-mellin"
    h_small, refined = found.h / found.h[2, 2], False
    if refine:
        started = time.perf_counter()
        h_small, refined = _refined(prepared, found, method)
        timings["refine"] = time.perf_counter() - started
    correlation = _verified(prepared, h_small, method)
    h_full = np.linalg.inv(_scale_matrix(prepared.q_scale)) @ h_small @ _scale_matrix(prepared.ref_scale)
    h_full = _pixel_exact(h_full / h_full[2, 2], reference, questioned)
    linear = h_full[:2, :2]
    scale = float(np.sqrt(abs(np.linalg.det(linear))))
    rotation = float(np.degrees(np.arctan2(linear[1, 0] - linear[0, 1], linear[0, 0] + linear[1, 1])))
    return Registration(
        transform=h_full, model=found.model, method=method, mirrored=found.mirrored,
        matches=int(found.matches), inliers=int(found.inliers),
        inlier_ratio=found.inliers / max(found.matches, 1),
        residual_px=float(found.residual) / prepared.q_scale if np.isfinite(found.residual) else float("nan"),
        rotation_deg=rotation, scale=scale, refined=refined, overlap_correlation=correlation,
        timings_s={k: round(v, 4) for k, v in timings.items()},
        inlier_cover=_inlier_cover(found, h_small, prepared.ref8.shape, prepared.q8.shape),
    )
