"""Streaming inference for videos of any length: overlapping windows linked into tracks.

The video is cut into windows of ``window`` frames that overlap by ``overlap`` frames. Each window is
segmented on its own (the model sees ``window`` frames at a time, so memory is bounded by the window).
The queries of consecutive windows are linked by the Hungarian algorithm on a cost that combines the mask
IoU in the shared frames with the cosine similarity of the query embeddings; a new query that matches no
live track starts a new one. Frames are emitted as soon as no later window can change them, so results can
be written incrementally.

Legend: ``T`` frames in a window, ``K`` kept queries, ``C`` embedding channels.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import linear_sum_assignment

from autoqvis import rle as rle_utils
from autoqvis.structures import Track

__all__ = ["StreamingLinker", "WindowResult", "run_streaming", "stream_windows"]


@dataclass
class WindowResult:
    """Output of segmenting one window.

    scores:        (K,) foreground confidence of each kept query.
    masks:         (K, T, H, W) bool.
    embeddings:    (K, C) query embeddings, or None.
    predicted_iou: (K, T) quality-head output, or None.
    """

    scores: np.ndarray
    masks: np.ndarray
    embeddings: np.ndarray | None = None
    predicted_iou: np.ndarray | None = None


@dataclass
class _Live:
    """A track while the video streams: finished frames as RLE, the last window's data for linking."""

    track_id: int
    first_frame: int
    masks: list[dict | None] = field(
        default_factory=list
    )  # RLE (or None) per emitted frame since first_frame
    ious: list[float] = field(default_factory=list)
    score_sum: float = 0.0
    score_frames: int = 0
    tail_masks: np.ndarray | None = (
        None  # (overlap, H, W) this track's masks in the frames the next window shares
    )
    embedding: np.ndarray | None = None
    last_window: int = -1


def stream_windows(num_frames: int, window: int, overlap: int) -> list[tuple[int, int]]:
    """[start, end) of each window; consecutive windows share ``overlap`` frames; the last ends at the end."""
    if window <= 0 or window >= num_frames:
        return [(0, num_frames)]
    if not 0 <= overlap < window:
        raise ValueError(f"overlap must be in [0, window), got overlap {overlap} and window {window}")
    stride = window - overlap
    starts = list(range(0, max(num_frames - window, 0) + 1, stride))
    if starts[-1] + window < num_frames:
        starts.append(num_frames - window)
    return [(s, s + window) for s in starts]


class StreamingLinker:
    """Links per-window results into video tracks.

    Call :meth:`add` with each window's result in order, then :meth:`finish`. ``min_iou``: a query joins a
    track only if their masks overlap this much in the shared frames (or the embeddings are similar enough
    when neither has a mask there).
    """

    def __init__(
        self, num_frames: int, hw: tuple[int, int], min_iou: float = 0.3, embedding_weight: float = 0.5
    ):
        self.num_frames, self.hw = num_frames, hw
        self.min_iou, self.embedding_weight = min_iou, embedding_weight
        self.tracks: list[_Live] = []
        self.window_index = -1
        self.prev_end = 0
        self.has_iou = False  # a window came with predicted IoUs (a model with the quality head)

    def add(self, start: int, end: int, result: WindowResult) -> None:
        """Link the window [start, end) to the tracks of the previous window."""
        self.window_index += 1
        self.has_iou |= result.predicted_iou is not None
        shared = max(0, self.prev_end - start)  # frames this window shares with the previous one
        live = [t for t in self.tracks if t.last_window == self.window_index - 1]
        assignment = self._match(live, result, shared) if live else {}
        K = len(result.scores)
        for k in range(K):
            track = assignment.get(k)
            if track is None:
                track = _Live(track_id=len(self.tracks), first_frame=start)
                self.tracks.append(track)
            else:
                self._pad_to(track, start)
            self._extend(track, result, k, start, shared, matched=k in assignment)
        self.prev_end = end

    def finish(self) -> list[Track]:
        """Tracks over the whole video (absent frames as None), sorted by mean window score; ``predicted_iou``
        is None when the windows had none (a model without the quality head)."""
        out = []
        for track in self.tracks:
            self._pad_to(track, self.num_frames)
            masks = [None] * track.first_frame + track.masks[: self.num_frames - track.first_frame]
            ious = [0.0] * track.first_frame + track.ious[: self.num_frames - track.first_frame]
            score = track.score_sum / max(track.score_frames, 1)
            ious = ious if self.has_iou else None  # no quality head: no predicted IoU (not zeros)
            out.append(Track(masks=masks, score=float(score), predicted_iou=ious, id=track.track_id))
        return sorted(out, key=lambda t: -t.score)

    # -----------------------------------------------------------------------------------------------

    def _match(self, live: list[_Live], result: WindowResult, shared: int) -> dict[int, _Live]:
        """Hungarian matching of live tracks to this window's queries."""
        K = len(result.scores)
        iou = np.zeros((len(live), K))
        if shared > 0:
            new = result.masks[:, :shared].reshape(K, -1).astype(np.float32)  # (K, shared*H*W)
            old = np.stack([t.tail_masks[-shared:] for t in live]).reshape(len(live), -1).astype(np.float32)
            inter = old @ new.T
            union = old.sum(1, keepdims=True) + new.sum(1)[None] - inter
            iou = np.where(union > 0, inter / np.maximum(union, 1), 0.0)
        similarity = np.zeros_like(iou)
        if result.embeddings is not None and all(t.embedding is not None for t in live):
            a = np.stack([t.embedding for t in live])
            a = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-6)
            b = result.embeddings / np.maximum(np.linalg.norm(result.embeddings, axis=1, keepdims=True), 1e-6)
            similarity = a @ b.T
        cost = -(iou + self.embedding_weight * similarity)
        rows, cols = linear_sum_assignment(cost)
        return {int(c): live[r] for r, c in zip(rows, cols) if iou[r, c] >= self.min_iou}

    def _extend(
        self, track: _Live, result: WindowResult, k: int, start: int, shared: int, matched: bool
    ) -> None:
        """Append query k's frames. A matched track keeps the previous window's masks for the first half of
        the shared frames and takes this window's for the rest; a new track takes the whole window."""
        offset = shared // 2 if matched else 0
        keep = start + offset - track.first_frame  # frames of the track that stay as they are
        del track.masks[keep:]
        del track.ious[keep:]
        encoded = rle_utils.encode_stack(result.masks[k, offset:])
        track.masks += [m if rle_utils.area(m) > 0 else None for m in encoded]
        T = result.masks.shape[1]
        ious = result.predicted_iou[k, offset:] if result.predicted_iou is not None else np.zeros(T - offset)
        track.ious += [float(v) for v in ious]
        track.score_sum += float(result.scores[k]) * T
        track.score_frames += T
        track.tail_masks = result.masks[k]
        track.embedding = None if result.embeddings is None else result.embeddings[k]
        track.last_window = self.window_index

    def _pad_to(self, track: _Live, frame: int) -> None:
        missing = frame - (track.first_frame + len(track.masks))
        if missing > 0:
            track.masks += [None] * missing
            track.ious += [0.0] * missing


def run_streaming(
    frames: Iterable[np.ndarray],
    num_frames: int,
    segment: Callable[[np.ndarray], WindowResult],
    window: int,
    overlap: int,
    hw: tuple[int, int],
    on_window: Callable[[], None] | None = None,
) -> list[Track]:
    """Decode lazily, segment each window with ``segment((T, H, W, 3) uint8)``, link, return tracks.
    ``on_window`` is called after each window (progress)."""
    linker = StreamingLinker(num_frames, hw)
    buffer: list[np.ndarray] = []
    iterator: Iterator[np.ndarray] = iter(frames)
    next_index = 0
    for start, end in stream_windows(num_frames, window, overlap):
        buffer = buffer[len(buffer) - (next_index - start) :] if next_index > start else []
        while next_index < end:
            buffer.append(next(iterator))
            next_index += 1
        linker.add(start, end, segment(np.stack(buffer)))
        if on_window is not None:
            on_window()
    return linker.finish()
