"""JPEG settling: pieces that do not settle, as the rest of the picture does, at the quality it was saved with before.

Method
------
A JPEG recompressed at the quality it was saved with changes little: its pixels have already settled near a
fixed point of that quantisation. A photograph saved at quality ``q1``, edited and saved again at a higher
quality keeps that ghost (Farid 2009): recompressed at ``q1`` its untouched part changes less than at the
qualities around it, while a piece pasted in from another picture (saved at another quality, moved off the grid,
resized) never settled at ``q1`` and changes as much as its content makes it change. The picture is cut to its
JPEG grid (``double_jpeg.grid_origin``); ``q1`` is the quality where the median change of a central crop dips
deepest against the qualities two steps either side (:func:`settling_quality`; the last save's own quality,
where a picture saved by a codec like OpenCV's reproduces itself, and the qualities above it are left out).
Per 8x8 block, the change on recompression at ``q1`` (squared difference of the luminance) is compared with two
content models of settling. Off the grid: the change of the same pixels recompressed on the grid shifted by 4
pixels, where no history lines up with the blocks and only the content responds (texture and edges change more,
flat areas less). Re-history: the change at ``q1`` of the picture given the host's history on its own grid
(:func:`rehistoried_change`: saved at ``q1``, then as its last save, with the file's own tables, those read from
decoded pixels' coefficients (:func:`tables_from_pixels`), or at the IJG
quality where decoded pixels reproduce themselves): settled content changes to the last bit as the picture does,
a piece that never settled changes more. The later save moves fine content (a one-pixel scratch) farther from the
fixed point of ``q1`` than smooth content, which the off-grid change does not show and the re-history does; with
a known last save, ``q1`` is the quality of the dip's valley whose re-history fits best
(:func:`rehistory_quality`). The log ratio of the change to each reference, each summed over 3x3 blocks, is put
on the scale of blocks of the same content class (nearness to clipping, off-grid change, brightness,
colourfulness; ``_blocks.standardise_by_content``, which only ever asks more evidence than the picture-wide
scale; the re-history's spread no less than ``resolution``), and a block's score is the smaller of the two: a
block is evidence only where both models leave its change unexplained (where the last save is not known, the
off-grid model alone). Connected blocks above ``region_level`` form candidate regions, each judged a-contrario on
its summed score
(:func:`region_decision`): a region is kept when its number of false alarms is at most ``nfa_threshold``. A
piece of a tenth of the picture lifts each of its blocks a little, which a test of the strongest block alone
cannot tell from chance. A decided region keeps the blocks above 0.4 of its plateau (:func:`plateau_extent`):
the 3x3 pooling spreads a piece's evidence one block past its edge. Blocks too flat to change off the grid are
not judged. Regions are judged only on a picture that shows a compression before its last one
(:func:`earlier_compression`): its ghost must dip deeper than those of its own content saved once, off its grid,
at its last quality; a picture saved once (a print scanned to JPEG) has no earlier history for a piece to lack,
and what the content model leaves unexplained there is not evidence. Its map is kept either way, and
``details["judged"]`` says which (fusion takes no image-level candidate from a picture not judged). The result
states ``outline_reach`` (16 px): the fusion keeps another detector's closer outline near its decisions.

Limits
------
Needs a picture saved at least twice on one grid, the last time at a higher quality than the one whose ghost it
carries, and a piece that does not share that history: a piece saved at the same quality and pasted on the grid
settles as the host does, and a picture resized or cropped off the grid after its last save shows no grid and is
not judged. A picture saved once has no ghost to share: its map shows what the content models did not
explain, and nothing is decided on it; an earlier compression too faint to dip deeper than the once-saved copies
(a quality close to the last one) is not judged either. Flat areas carry no evidence, and saturated colours and
near-white highlights, clipped on decoding, change on recompression whatever their history (their content classes
ask more of them). Decoded pixels (a PNG) whose last save used other tables than the IJG ones get tables read
from their coefficients; where too few frequencies hold enough values to read (fewer than 15), they keep the
off-grid model alone, which marks fine content such as a film scratch when a later save moved it. Decoded
pixels that change little at a high IJG quality (95 to 97) are taken as saved there, though their last save may
have used other tables at a lower quality. A host saved before at a quality at or above its last save's carries
no ghost (Farid 2009): its map does not rank a piece. The re-history assumes 4:2:0 chroma for a colour picture.
Measured ranges are in ``benchmarks/results/detector_notes.md``.

References
----------
H. Farid, "Exposing digital forgeries from JPEG ghosts", IEEE TIFS 4(1), 2009.
A. Desolneux, L. Moisan, J.-M. Morel, "From Gestalt Theory to Image Analysis", Springer, 2008 (NFA).

Examples
--------
>>> from skimage import data
>>> jpeg_settling(data.astronaut()).skipped is not None  # never compressed: no grid, no ghost
True
"""

from __future__ import annotations

import functools
import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from retouch.detect._blocks import (
    CALIBRATION_MARGINS,
    GroupDecision,
    bonferroni_z,
    block_mean,
    block_result,
    block_saturation,
    content_classes,
    content_null,
    finite_or_none,
    median_of,
    nfa_score,
    null_tail,
    placed_at_origin,
    robust_scale,
    standardise,
    standardise_by_content,
    strength_to_heat,
)
from retouch.detect._options import options_params, resolve_options
from retouch.detect._recompress import recompression_block_sqdiff
from retouch.detect.double_jpeg import _luminance, block_dct, block_extremes, grid_origin, last_step
from retouch.imaging import to_uint8
from retouch.registry import register
from retouch.result import AnalysisResult

FALSE_ALARM_CONTROL = ("a-contrario: a region's NFA is the number of 3x3-block neighbourhoods judged times the "
                       "chance that a region of an untouched JPEG sums as much change on recompression at its "
                       "ghost quality, against its content class, the same pixels off the grid and (where the "
                       "last save is known) the picture given its own history again, a block scoring the lesser "
                       "of the two (a Gaussian widened by tail_margin), on pictures whose ghost dips deeper than every one of "
                       "history_references once-saved copies of their content (a once-saved picture passes this "
                       "test with a chance of at most 1 / (history_references + 1))")

EXPLANATION = (
    "A JPEG saved again at a quality it was saved with before changes little: it has settled there. A photograph "
    "saved as a JPEG, edited, and saved again at a higher quality keeps that trace, and a piece pasted in from "
    "another picture does not share it: saved again at the photograph's earlier quality, the piece changes more "
    "than the rest. Each part is compared with the same pixels saved on a shifted grid, which shows how much its "
    "content alone would change, and with the picture given its own history again, which shows how much a later "
    "save moved settled content of its kind. Limits: it needs a picture saved at least twice on one grid, the "
    "last time at the higher quality; a piece with the same history as the rest, or a picture resized after its "
    "last save, leaves no trace; plain areas carry no evidence."
)

MIN_BLOCKS = 6  # fewest 8x8 blocks a region holds (the other block detectors' minimum)


@dataclass(frozen=True)
class SettlingOptions:
    """Options of :func:`jpeg_settling`.

    Attributes
    ----------
    qualities : tuple of int
        Lowest and highest JPEG quality sought for the quality whose ghost the picture carries (40, 98).
    search_side : int
        Side of the central crop on which that quality is sought (512 px).
    floor : float
        Added to the squared changes (8-bit units squared) before their logarithm, so that blocks which do not
        change at all tie instead of spreading over orders of magnitude of nothing (0.1: a tenth of the pixels
        changed by one level).
    min_offgrid : float
        Blocks whose off-grid change (mean squared, 8-bit units) is below this are too flat to judge (2.0).
    region_level : float
        A candidate region gathers connected blocks whose score (in units of their content class) is above
        this (1.0); see :func:`region_decision`.
    channels : str
        What is recompressed for the map: ``"gray"``, the luminance (default), or ``"rgb"``, the colour picture
        with OpenCV's chroma subsampling, its change the mean over the channels. On the development material
        colour gave sharper maps of CASIA's splices and false regions on saturated colours of untouched web
        photographs (``benchmarks/results/detector_notes.md``).
    nfa_threshold : float
        A region is decided when its number of false alarms is at most this (0.01).
    tail_margin : float
        Width of the null model of a pooled block score against a standard Gaussian (see
        ``_blocks.null_tail``), calibrated on untouched photographs and their re-saved copies.
    history_references : int
        How many once-saved copies of the picture's content its ghost is tested against before any region is
        judged (:func:`earlier_compression`; 4: a picture saved once passes with a chance of at most 1 in 5);
        0 judges every picture.
    extent : str
        ``"plateau"`` (default): a decided region keeps its blocks above 0.4 of its plateau
        (:func:`plateau_extent`); ``"level"``: every block above ``region_level`` it gathered.
    content_model : str
        ``"rehistory"`` (default): a block's score is the smaller of the off-grid and the re-history scores where
        the last save is known (the file's tables, or decoded pixels that reproduce themselves at an IJG quality),
        the off-grid score elsewhere; ``"offgrid"``: the off-grid score alone.
    resolution : float
        The least spread (log ratio units) the re-history score is judged on (0.05: a 5 % difference between the
        picture's change and its re-historied version's). A settled picture given its history again changes as
        it does to within rounding, so its own spread is no scale of chance.
    """

    qualities: tuple[int, int] = (40, 98)
    search_side: int = 512
    floor: float = 0.1
    min_offgrid: float = 2.0
    region_level: float = 1.0
    channels: str = "gray"
    nfa_threshold: float = 0.01
    tail_margin: float = 2.0
    history_references: int = 4
    extent: str = "plateau"
    content_model: str = "rehistory"
    resolution: float = 0.05


def _central_crop(pixels: np.ndarray, side: int, shift: tuple[int, int] = (0, 0)) -> np.ndarray:
    """A central crop of at most ``side`` px of ``pixels``, its corner on the 16-px grid moved by ``shift``."""
    height, width = pixels.shape[:2]
    top = max((height - side) // 2, 0) // 16 * 16 + shift[0]
    left = max((width - side) // 2, 0) // 16 * 16 + shift[1]
    rows, cols = (min(side, height - top)) // 8 * 8, (min(side, width - left)) // 8 * 8
    return np.ascontiguousarray(pixels[top: top + rows, left: left + cols])


def _median_changes(crop: np.ndarray, sought: np.ndarray) -> np.ndarray:
    """The median block change of ``crop`` on recompression at each quality of ``sought``."""
    return np.array([float(median_of(recompression_block_sqdiff(crop, int(q)))) for q in sought])


def luminance_changes(pixels: np.ndarray, qualities: tuple[int, int], *, side: int = 512) -> np.ndarray:
    """The median block change of the luminance of a central crop of at most ``side`` px of ``pixels`` (8-bit BGR
    or gray, cropped to the grid) on recompression at each quality of ``qualities`` (both ends included): what
    :func:`settling_quality` and :func:`earlier_compression` both read, measured once by the detector."""
    crop = _central_crop(pixels, side)
    gray = cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY) if crop.ndim == 3 else crop
    return _median_changes(gray, np.arange(qualities[0], qualities[1] + 1))


def _dips(changes: np.ndarray) -> np.ndarray:
    """Each quality's change against the geometric mean of the changes two qualities either side (1 at the ends)."""
    changes = changes + 1e-3
    dips = np.ones(changes.size)
    dips[2:-2] = changes[2:-2] / np.sqrt(changes[:-4] * changes[4:])
    return dips


def settling_quality(pixels: np.ndarray, qualities: tuple[int, int], *, side: int = 512,
                     reproduced: float = 0.1, luminance: np.ndarray | None = None) -> tuple[int, float, int | None]:
    """The quality whose ghost ``pixels`` (8-bit BGR or gray, cropped to the grid) carry: the one where the median
    block change on recompression dips deepest against the geometric mean of those two qualities either side,
    sought on a central crop of at most ``side`` px; with that ratio (1 without a dip), and the quality at which
    the picture reproduces itself (its luminance's median block change below ``reproduced``), if any.

    A picture last saved by a codec like OpenCV's reproduces itself at that last quality, its pasted pieces with
    it (they went through it too): the ghost of the earlier history is then sought at least three qualities below
    it. A ghost survives a later save at a higher quality only (Farid 2009); above the last quality, dips come
    from quantisation steps that divide the last save's, which every part of the picture shares.

    ``luminance``: :func:`luminance_changes` of the same ``pixels``, ``qualities`` and ``side`` when already
    measured (the detector measures them once for this and :func:`earlier_compression`).
    """
    crop = _central_crop(pixels, side)
    gray = cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY) if crop.ndim == 3 else crop
    low, high = qualities
    sought = np.arange(low, high + 1)
    if luminance is None:
        luminance = _median_changes(gray, sought)
    changes = luminance if gray is crop else _median_changes(crop, sought)
    dips = _dips(changes)
    best = int(np.argmin(dips))
    last = None
    if luminance.min() < reproduced:
        last = int(sought[int(np.argmin(luminance))])
        dips[sought >= last - 2] = np.inf
        best = int(np.argmin(dips))
    return int(sought[best]), float(min(dips[best], 1.0)), last


def rehistory_quality(pixels: np.ndarray, quality: int, last: int | Sequence[Sequence[int]], *,
                      qualities: tuple[int, int], side: int = 512, floor: float = 0.1, channels: str = "gray"
                      ) -> int:
    """Of ``quality`` and the qualities either side (the valley of its dip), the one whose re-history
    (:func:`rehistoried_change`) reproduces the change of ``pixels`` (8-bit gray or BGR, cropped to their grid)
    best, on a central crop: the mean over blocks of the absolute log ratio of the two changes is least there (the
    dip's own quality where they tie).

    The dip finds the valley against the trend of change with quality, but the median change it is measured on
    is coarse, and its deepest point can lie one quality off the earlier save's. At the earlier save's quality,
    settled content given that history again changes to the last bit as the picture does.
    """
    crop = _central_crop(pixels, side)
    measured = cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY) if crop.ndim == 3 and channels == "gray" else crop
    candidates = [q for q in (quality, quality - 1, quality + 1) if qualities[0] <= q <= qualities[1]]

    def misfit(candidate: int) -> float:
        change = recompression_block_sqdiff(measured, candidate)
        reference = rehistoried_change(crop, candidate, last, channels=channels)
        return float(np.abs(np.log(change + floor) - np.log(reference + floor)).mean())

    return min(candidates, key=misfit)


MIN_READ_STEPS = 15  # fewest luminance steps read from the pixels for their tables to stand for the last save
READ_SIDE = 1024  # side of the central crop the last save's steps are read on (px)


@functools.lru_cache(maxsize=None)
def ijg_tables(quality: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The IJG luminance and chroma quantisation tables (natural order) at ``quality``, as libjpeg scales them."""
    from PIL import Image

    stream = io.BytesIO()
    Image.new("RGB", (16, 16)).save(stream, format="JPEG", quality=int(quality))
    tables = Image.open(io.BytesIO(stream.getvalue())).quantization
    return tuple(int(v) for v in tables[0]), tuple(int(v) for v in tables[1])


def tables_from_pixels(luminance: np.ndarray, *, min_values: int = 150) -> tuple[list[list[int]], int]:
    """The quantisation tables of the last save of decoded pixels (``luminance``: JPEG's luma, float, cropped to
    whole blocks of its grid), natural order, luminance then chroma, and how many luminance steps were read.

    Each luminance step is read from its frequency's dequantised values (``double_jpeg.last_step``) where at
    least ``min_values`` of them are non-zero; the other steps, and the chroma table, are those of the IJG
    quality whose luminance table fits the steps read best (least mean absolute log ratio). A frequency that a
    save before the last quantised more coarsely, by a whole multiple, reads as that multiple (its values all
    sit on it), which the fit weighs as one step among many.
    """
    coefficients = block_dct(luminance, (0, 0)).reshape(-1, 64)
    counts = (np.abs(coefficients) > 1.5).sum(axis=0)
    steps = np.array([last_step(coefficients[:, k]) if counts[k] >= min_values else 1 for k in range(64)])
    read = steps > 1
    if not read.any():
        return [list(table) for table in ijg_tables(75)], 0
    logs = np.log(steps[read])
    fitted = min(range(10, 101), key=lambda q: float(np.abs(np.log(np.array(ijg_tables(q)[0])[read]) - logs).mean()))
    luma, chroma = ijg_tables(fitted)
    return [np.where(read, steps, luma).astype(int).tolist(), list(chroma)], int(read.sum())


REFERENCE_SHIFTS = ((4, 4), (2, 6), (6, 2), (3, 5), (5, 3), (1, 7), (7, 1))


def earlier_compression(pixels: np.ndarray, qualities: tuple[int, int], *, side: int = 512, references: int = 4,
                        luminance: np.ndarray | None = None) -> dict[str, Any]:
    """Whether ``pixels`` (8-bit BGR or gray, cropped to their grid) show a JPEG compression before their last
    one: the deepest dip of their luminance's median block change (as in :func:`settling_quality`) against the
    same dip in ``references`` copies of the same content saved once.

    Each reference is the central crop moved off the grid by a few pixels (so that no earlier grid lines up with
    its blocks) and saved once at the picture's last quality (where its luminance changes least on
    recompression); its dips are sought over the same qualities, below the last one minus 2. Under the hypothesis
    of a picture saved once, the picture and its references are alike, and the picture dips deeper than all of
    them with a chance of at most ``1 / (references + 1)``; the test opens only then. A picture saved before at
    a lower quality dips far deeper (its ghost) than its once-saved references.

    ``luminance``: :func:`luminance_changes` of the same ``pixels``, ``qualities`` and ``side`` when already
    measured.
    """
    gray = cv2.cvtColor(pixels, cv2.COLOR_BGR2GRAY) if pixels.ndim == 3 else pixels
    low, high = qualities
    sought = np.arange(low, high + 1)
    changes = luminance if luminance is not None else _median_changes(_central_crop(gray, side), sought)
    last = int(sought[int(np.argmin(changes))])
    allowed = sought < last - 2
    if allowed.sum() < 5:
        return {"open": False, "last_quality": last, "dip": 1.0, "reference_dips": []}
    dip = float(_dips(changes)[allowed].min())
    # a dip is read only at the allowed qualities, each from the changes two qualities either side: a reference
    # is recompressed below the last quality only (the changes above it stay unread, NaN)
    read = sought < last
    reference_dips = []
    for shift in REFERENCE_SHIFTS[:references]:
        crop = _central_crop(gray, side + 8, shift)
        reference = np.full(sought.size, np.nan)
        reference[read] = _median_changes(resaved(crop, last), sought[read])
        reference_dips.append(float(_dips(reference)[allowed].min()))
    return {"open": bool(dip < min(reference_dips)), "last_quality": last, "dip": round(dip, 4),
            "reference_dips": [round(value, 4) for value in reference_dips]}


def settling_change(pixels: np.ndarray, quality: int) -> tuple[np.ndarray, np.ndarray]:
    """Per 8x8 block of ``pixels`` (8-bit, cropped to whole blocks of its grid), the mean squared change on
    recompression at ``quality`` on the grid, and that of the same pixels recompressed on the grid shifted by 4
    px (the mean of the four shifted blocks each covering a quarter of the block; NaN on the outer blocks)."""
    aligned = recompression_block_sqdiff(pixels, quality)
    shifted = recompression_block_sqdiff(pixels[4:, 4:], quality)  # blocks at (8 i + 4, 8 j + 4)
    rows, cols = aligned.shape
    offgrid = np.full((rows, cols), np.nan, np.float32)
    if rows > 2 and cols > 2:
        quarter = shifted[: rows - 1, : cols - 1]
        offgrid[1:-1, 1:-1] = 0.25 * (quarter[:-1, :-1] + quarter[:-1, 1:] + quarter[1:, :-1] + quarter[1:, 1:])
    return aligned, offgrid


def resaved(pixels: np.ndarray, last: int | Sequence[Sequence[int]]) -> np.ndarray:
    """``pixels`` (8-bit gray, or BGR) saved once as JPEG and decoded: at the IJG quality ``last`` (OpenCV), or
    with the quantisation tables ``last`` (natural order, luminance first; Pillow, chroma subsampled 4:2:0) as
    the file's last save had them."""
    if isinstance(last, (int, np.integer)):
        ok, buffer = cv2.imencode(".jpg", pixels, [cv2.IMWRITE_JPEG_QUALITY, int(last)])
        return cv2.imdecode(buffer, cv2.IMREAD_UNCHANGED)
    from PIL import Image

    tables = [[int(step) for step in table] for table in last]
    stream = io.BytesIO()
    if pixels.ndim == 2:
        Image.fromarray(pixels, "L").save(stream, format="JPEG", qtables=tables[:1])
    else:
        tables = tables if len(tables) > 1 else tables * 2
        Image.fromarray(np.ascontiguousarray(pixels[..., ::-1]), "RGB").save(stream, format="JPEG", qtables=tables,
                                                                          subsampling=2)
    decoded = np.asarray(Image.open(io.BytesIO(stream.getvalue())))
    return decoded if decoded.ndim == 2 else np.ascontiguousarray(decoded[..., ::-1])


def rehistoried_change(pixels: np.ndarray, quality: int, last: int | Sequence[Sequence[int]], *,
                       channels: str = "gray") -> np.ndarray:
    """Per 8x8 block of ``pixels`` (8-bit gray or BGR, cropped to whole blocks of its grid), the mean squared
    change on recompression at ``quality`` of the picture given the host's history on its own grid: saved at
    ``quality``, then as its last save (``last``: an IJG quality or the file's tables), as settled content was,
    in colour (its clipping on decoding is part of that history); measured on the luminance when ``channels``
    is ``"gray"``."""
    history = resaved(resaved(pixels, quality), last)
    if channels == "gray" and history.ndim == 3:
        history = np.ascontiguousarray(cv2.cvtColor(history, cv2.COLOR_BGR2GRAY))
    return recompression_block_sqdiff(history, quality)


def _pooled_log_ratio(change: np.ndarray, reference: np.ndarray, informative: np.ndarray, floor: float
                      ) -> np.ndarray:
    """log((sum of ``change`` + floor) / (sum of ``reference`` + floor)) over the informative blocks of each 3x3
    neighbourhood."""
    def pooled(values: np.ndarray) -> np.ndarray:
        return cv2.blur(np.where(informative, values, 0).astype(np.float32), (3, 3), borderType=cv2.BORDER_REFLECT)

    return np.log(pooled(change) + np.float32(floor)) - np.log(pooled(reference) + np.float32(floor))


def region_evidence(z: np.ndarray, *, level: float, min_blocks: int) -> np.ndarray:
    """Per block, the evidence of the candidate region holding it (-inf outside every candidate): a candidate
    region is a connected set (8-neighbours) of at least ``min_blocks`` blocks of ``z`` above ``level``, and its
    evidence its summed score over ``sqrt(9 n)`` (n blocks of a map pooled over 3x3 blocks, whose pooling shares
    each block's evidence with its eight neighbours: unit variance for independent blocks)."""
    count, labels, stats, _ = cv2.connectedComponentsWithStats((z > level).view(np.uint8), connectivity=8)
    sums = np.bincount(labels.ravel(), weights=z.ravel().astype(np.float64), minlength=count)
    sizes = stats[:, cv2.CC_STAT_AREA].astype(np.float64)
    evidence = np.where(sizes >= min_blocks, sums / np.sqrt(9.0 * np.maximum(sizes, 1.0)), -np.inf)
    evidence[0] = -np.inf
    return evidence[labels]


def plateau_extent(z: np.ndarray, decided: np.ndarray, *, quantile: float = 0.75, share: float = 0.4
                   ) -> np.ndarray:
    """The blocks of each connected region of ``decided`` (8-neighbours) whose score in ``z`` reaches ``share``
    of the region's plateau (its ``quantile`` score).

    ``z`` pools each block with its eight neighbours, which spreads a piece's evidence one block past its edge.
    Pooled over 3x3 blocks, a piece of height ``h`` gives a block just outside its edge at most ``h / 3`` (one
    column of three) and keeps at least ``4 h / 9`` on its own corner blocks: a share between the two (0.4)
    finds the piece's edge whatever its strength, where a fixed level lets a strong piece reach further.
    """
    count, labels = cv2.connectedComponents(decided.view(np.uint8), connectivity=8)
    if count <= 1:
        return decided
    inside = labels > 0
    order = np.argsort(labels[inside], kind="stable")
    values, owners = z[inside][order], labels[inside][order]
    starts = np.searchsorted(owners, np.arange(1, count))
    heights = np.zeros(count)
    for label, part in enumerate(np.split(values, starts[1:]), start=1):
        heights[label] = float(np.quantile(part, quantile))
    return decided & (z >= share * heights[labels])


def region_decision(z: np.ndarray, *, tests: int, margin: float, nfa_threshold: float, level: float,
                    min_blocks: int) -> GroupDecision:
    """A-contrario decision on the candidate regions of a map of 3x3-pooled block scores (each on a unit scale;
    see :func:`region_evidence`): a region's number of false alarms is ``tests * P(Z > evidence)`` under
    :func:`_blocks.null_tail` (``tests`` counts independent 3x3 neighbourhoods). A piece of a tenth of the picture
    lifts each of hundreds of blocks a little, which a test of the strongest block alone cannot tell from chance.
    """
    evidence = region_evidence(z, level=level, min_blocks=min_blocks)
    candidate = np.isfinite(evidence)
    peak = float(evidence[candidate].max()) if candidate.any() else 0.0
    nfa_map = np.where(candidate, tests * null_tail(np.where(candidate, evidence, 0.0), margin), np.inf)
    best_nfa = float(tests * null_tail(max(peak, 0.0), margin))
    group_nfa = {m: float(tests * null_tail(max(peak, 0.0), m)) if candidate.any() else math.inf
                 for m in CALIBRATION_MARGINS}
    decide = margin * bonferroni_z(tests, nfa_threshold)
    return GroupDecision(nfa_map <= nfa_threshold, nfa_map, best_nfa, decide, peak, tests, group_nfa)


@register("settling", title="JPEG settling (pieces without the picture's JPEG ghost)",
          description="Areas that change when the picture is saved again at a quality it was saved with before, "
                      "where the rest has settled, judged against the same pixels recompressed off the grid and "
                      "the picture given its own history again: pieces pasted in from another picture before the "
                      "last save.", default=True, uses_jpeg=True)
def jpeg_settling(image: np.ndarray, *, jpeg_quantization: Mapping[int, Sequence[int]] | None = None,
                  options: SettlingOptions | None = None, **changes: Any) -> AnalysisResult:
    """Pieces that do not settle, as the rest of the picture does, at the quality whose JPEG ghost it carries.

    Parameters
    ----------
    image : ndarray
        uint8/uint16 gray or RGB image, as the file stores its pixels.
    jpeg_quantization : mapping, optional
        The file's quantization tables (natural order); the picture's last save for the re-history content model.
        ``None`` for decoded pixels (the last save is then known only where they reproduce themselves at an IJG
        quality).
    options : SettlingOptions, optional
        Options (defaults: ``SettlingOptions()``); keyword ``changes`` override its fields.

    Returns
    -------
    AnalysisResult
        ``jpeg-ghost`` regions, each with ``evidence["nfa"]``; the grid origin, the settling quality and the depth
        of its dip in ``details``.
    """
    options = resolve_options(SettlingOptions(), options, changes)
    if options.channels not in ("gray", "rgb"):
        raise ValueError(f"channels must be 'gray' or 'rgb', got {options.channels!r}")
    if options.extent not in ("plateau", "level"):
        raise ValueError(f"extent must be 'plateau' or 'level', got {options.extent!r}")
    if options.content_model not in ("rehistory", "offgrid"):
        raise ValueError(f"content_model must be 'rehistory' or 'offgrid', got {options.content_model!r}")
    array = np.asarray(image)
    shape = array.shape[:2]
    params = {**options_params(options), "block": 8, "false_alarm_control": FALSE_ALARM_CONTROL,
              "outline_reach": 16}
    luminance = _luminance(array)
    origin, share = grid_origin(luminance)
    top, left = origin
    details: dict[str, Any] = {"grid_origin": list(origin), "grid_vote_share": round(share, 3)}
    rows, cols = (shape[0] - top) // 8, (shape[1] - left) // 8
    if rows < 8 or cols < 8 or share < 0.2:
        return AnalysisResult.skipped_result("settling", shape, "the pixels show no JPEG block grid (never "
                                             "compressed, or resized after their last compression)", params=params,
                                             explanation=EXPLANATION, details=details)
    pixels = to_uint8(array)
    if pixels.ndim == 3:
        pixels = cv2.cvtColor(np.ascontiguousarray(pixels[..., :3]), cv2.COLOR_RGB2BGR)
    pixels = np.ascontiguousarray(pixels[top: top + 8 * rows, left: left + 8 * cols])
    # the ghost is sought in colour (the earlier saves' colour conversion and chroma subsampling are part of it);
    # the luminance's changes over the qualities are read by both the quality search and the history test
    luminance_sweep = luminance_changes(pixels, options.qualities, side=options.search_side)
    quality, dip, last = settling_quality(pixels, options.qualities, side=options.search_side,
                                          luminance=luminance_sweep)
    low, high = block_extremes(pixels, (0, 0), (rows, cols))
    headroom = np.minimum(low, 255 - high).astype(np.float32)  # how near a channel comes to clipping
    colour = pixels
    if options.channels == "gray" and pixels.ndim == 3:
        pixels = np.ascontiguousarray(cv2.cvtColor(pixels, cv2.COLOR_BGR2GRAY))
    aligned, offgrid = settling_change(pixels, quality)
    details.update({"settling_quality": quality, "settling_dip": round(dip, 4), "reproduced_at": last})
    history = (earlier_compression(pixels, options.qualities, side=options.search_side,
                                   references=options.history_references, luminance=luminance_sweep)
               if options.history_references > 0 else None)
    if history is not None:
        details["earlier_compression"] = history

    # the last save, where it is known: the file's tables, or the IJG quality where decoded pixels reproduce
    # themselves (below the top of the search, where every picture nearly does)
    last_save: int | list[list[int]] | None = None
    details["content_model"] = "off the grid (the last save's tables are not known)"
    if options.content_model == "rehistory":
        if jpeg_quantization is not None and origin == (0, 0):
            last_save = [list(jpeg_quantization[key]) for key in sorted(jpeg_quantization)]
            details["content_model"] = "re-history (the last save's tables from the file)"
        elif last is not None and last < options.qualities[1]:
            last_save = last
            details["content_model"] = f"re-history (the pixels reproduce themselves at quality {last})"
        elif jpeg_quantization is None:
            # read on a central crop: a 24 MP scan holds far more values per frequency than the steps need
            tables, read = tables_from_pixels(_central_crop(luminance[top: top + 8 * rows, left: left + 8 * cols],
                                                            READ_SIDE))
            if read >= MIN_READ_STEPS:
                last_save = tables
                details["content_model"] = (f"re-history (the last save's tables read from the pixels: {read} "
                                            "luminance steps, the others an IJG table's)")
    if last_save is None:
        reference = offgrid
    else:
        fitted = rehistory_quality(colour, quality, last_save, qualities=options.qualities,
                                   side=options.search_side, floor=options.floor, channels=options.channels)
        if fitted != quality:
            quality = fitted
            aligned, offgrid = settling_change(pixels, quality)
            details["settling_quality"] = quality
        reference = rehistoried_change(colour, quality, last_save, channels=options.channels)
    informative = np.isfinite(offgrid) & (np.nan_to_num(offgrid) >= options.min_offgrid)
    if informative.sum() < 48:
        return AnalysisResult.skipped_result("settling", shape, "too few blocks with enough detail to judge",
                                             params=params, explanation=EXPLANATION, details=details)
    # the content model: a neighbourhood's change on the grid over that of its settled reference (sums over 3x3
    # blocks before the ratio: a ratio of sums is steadier than a sum of ratios where single blocks barely change)
    ratio = _pooled_log_ratio(aligned, reference, informative, options.floor)
    offgrid_ratio = (ratio if reference is offgrid
                     else _pooled_log_ratio(aligned, offgrid, informative, options.floor))
    # the decision judges each block against blocks of its content: clipped pixels (the codec's round trip is
    # unstable there), off-grid change (texture), brightness and colourfulness; a class only ever asks more
    brightness = block_mean(luminance[top: top + 8 * rows, left: left + 8 * cols], 8)
    texture = np.log(np.nan_to_num(offgrid) + np.float32(options.floor))
    colourfulness = block_saturation(array[top: top + 8 * rows, left: left + 8 * cols], 8) if array.ndim == 3 else None
    classes = content_classes(informative, headroom, texture, brightness, colourfulness)
    pooled = standardise_by_content(offgrid_ratio, informative, classes)
    strength = standardise(offgrid_ratio, informative)
    if ratio is not offgrid_ratio:
        # a settled picture given its own history again changes as it does to within rounding: the re-history
        # ratio's spread on it is no scale of chance, so it is judged on at least `resolution`; a block is evidence
        # only where both content models leave its change unexplained (never more than the off-grid model alone)
        centre, spread = content_null(ratio, informative, classes)
        pooled = np.minimum(pooled, (ratio - centre) / np.maximum(spread, np.float32(options.resolution)))
        picture_scale = max(robust_scale(ratio, informative)[1], options.resolution)
        strength = np.minimum(strength, (ratio - median_of(ratio[informative])) / picture_scale)
    pooled = np.where(informative, pooled, 0.0).astype(np.float32)
    strength = np.where(informative, strength, 0.0).astype(np.float32)
    decision = region_decision(pooled, tests=max(int(informative.sum()), 1) // 9 + 1, margin=options.tail_margin,
                               nfa_threshold=options.nfa_threshold, level=options.region_level, min_blocks=MIN_BLOCKS)
    judged = history is None or history["open"]
    if not judged:
        decided = np.zeros_like(decision.mask)
    elif options.extent == "plateau":
        decided = plateau_extent(pooled, decision.mask)
    else:
        decided = decision.mask
    score = nfa_score(decision.best_nfa, options.nfa_threshold, decided=bool(decided.any()))
    details.update({"smallest_nfa": finite_or_none(decision.best_nfa), "null": decision.null_record(),
                    "judged_blocks": int(informative.sum()), "judged": bool(judged)})
    if not judged:
        summary = ("Not judged: the picture shows no JPEG compression before its last one (its ghost dips no "
                   "deeper than those of the same content saved once), so no piece can lack a history it has not.")
    elif decided.any():
        summary = (f"{100 * decided.mean():.2f} % of the picture still changes when saved again at quality "
                   f"{quality}, where the rest has settled.")
    else:
        summary = (f"No area changes on recompression at quality {quality} beyond what its content explains "
                   "(which needs the picture to have been saved at least twice on one grid).")
    # the map ranks blocks by their own ratio; a decided region's blocks are lifted to the upper half (in the
    # same order), so that what is decided shows as such: the decision is on regions, not on single blocks
    heat = strength_to_heat(strength, decision.threshold_z)
    heat[decided] = 0.5 + 0.5 * heat[decided]
    part = block_result("settling", heat_blocks=heat,
                        mask_blocks=decided, block=8, shape=(shape[0] - top, shape[1] - left),
                        kind_of={"jpeg-ghost": decided}, score=score,
                        params={**params, "threshold_z": round(decision.threshold_z, 3)}, summary=summary,
                        explanation=EXPLANATION, details=details, min_area=6 * 64, nfa=decision.nfa,
                        what="unsettled piece")
    return placed_at_origin(part, shape, origin)
