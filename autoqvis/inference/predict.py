"""Segment and track every object in videos: whole-video or streaming inference, and the files it writes.

Whole-video mode is the reference's: every frame (resized to short side 360) in one clip, the top-k queries
as tracks, masks at the original size. Streaming mode cuts long videos into overlapping windows linked by
:mod:`autoqvis.inference.streaming`; memory is bounded by the window, not the video.

Per video, ``autoqvis predict`` writes into ``OUT``:

- ``results/<video>.json``: YouTube-VIS results (RLE per frame, score, per-frame predicted quality), written
  atomically when the video is done, with ``fingerprints/<video>.json`` (the weights' identity, the
  options and the video's identity): a rerun skips videos finished with the same fingerprint and stops on
  ones made with another (:mod:`autoqvis.io.fingerprint`); ``predictions.json`` gathers them all
  with ``video_id`` = the video's position and ``video_name``;
- ``masks/<video>/<frame>.png``: DAVIS palette PNGs, track k+1 painted with the k-th best score on top
  (at most 20 tracks, as the DAVIS-2017 unsupervised protocol reads them);
- ``overlays/<video>.mp4`` (and ``.gif`` for videos of at most 60 frames): each track in a stable colour with
  its id and score.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from autoqvis import rle
from autoqvis.config import EvaluationConfig, InferenceConfig, config_to_dict
from autoqvis.config.checks import choices
from autoqvis.config.sections import TrackScore
from autoqvis.device import autocast_dtype, resolve_amp
from autoqvis.errors import DataError
from autoqvis.inference.refine import crf_refine_tracks
from autoqvis.inference.streaming import WindowResult, run_streaming, stream_windows
from autoqvis.io.atomic import atomic_path, atomic_write_json
from autoqvis.io.davis import DAVIS_PALETTE, write_mask_png
from autoqvis.io.fingerprint import Unit, open_unit, stat_identity
from autoqvis.io.video import SkipReport, VideoSource, open_video, skip_bad_input
from autoqvis.io.ytvis import load_json
from autoqvis.structures import Track, VideoInfo, VideoTracks

__all__ = [
    "PredictionRun",
    "id_map",
    "prediction_unit",
    "segment_video",
    "write_davis_masks",
    "write_overlay",
]

log = logging.getLogger("autoqvis")


def window_segmenter(
    model, inference: InferenceConfig, output_hw: tuple[int, int]
) -> Callable[[np.ndarray], WindowResult]:
    """``segment((T, H, W, 3) uint8 frames) -> WindowResult`` with masks at ``output_hw``, on the model's
    device. An ``inference.amp`` the device cannot run (``fp16`` on the CPU) is a
    :class:`~autoqvis.device.DeviceError` here, before any frame is read."""
    device = model.pixel_mean.device
    autocast_dtype(inference.amp, device)
    amp = resolve_amp(inference.amp, device)

    def segment(frames: np.ndarray) -> WindowResult:
        clip = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).to(device)
        out = model.inference(clip, output_size=output_hw, top_k=inference.top_k, amp=amp)
        return WindowResult(
            scores=out.scores.float().cpu().numpy(),
            masks=out.masks.cpu().numpy(),
            embeddings=None if out.embeddings is None else out.embeddings.float().cpu().numpy(),
            predicted_iou=None if out.ious is None else out.ious.float().cpu().numpy(),
        )

    return segment


@torch.no_grad()
def segment_video(
    model,
    video: VideoSource | str | Path,
    inference: InferenceConfig | None = None,
    on_window: Callable[[], None] | None = None,
) -> VideoTracks:
    """Tracks of one video (RLE at the original frame size), whole-video or streaming, with the settings of
    ``inference`` (default: the section's defaults; every field but ``device``: the model runs where it is).

    ``video``: a path (opened at ``inference.short_side``) or a :class:`VideoSource` used as given."""
    inference = inference or InferenceConfig()
    resized = (
        video
        if isinstance(video, VideoSource)
        else open_video(video, inference.short_side, inference.max_size)
    )
    original = resized.frame_size()
    source = resized
    num_frames = len(resized)
    window = inference.window if 0 < inference.window < num_frames else num_frames
    overlap = min(inference.overlap, window - 1) if window < num_frames else 0
    segment = window_segmenter(model, inference, original)
    tracks = run_streaming(iter(resized), num_frames, segment, window, overlap, original, on_window)
    tracks = rank_tracks(tracks, inference.track_score)
    if inference.crf_short_side > 0:
        best = inference.crf_max_tracks
        tracks = crf_refine_tracks(tracks[:best], resized, inference.crf_short_side) + tracks[best:]
    info = VideoInfo(id=0, width=original[1], height=original[0], length=num_frames, name=source.name)
    return VideoTracks(video=info, tracks=tracks)


def rank_tracks(tracks: list[Track], track_score: TrackScore) -> list[Track]:
    """The tracks best first, numbered 1..n (``inference.track_score``). ``"quality"`` first multiplies each
    track's score by its mean predicted IoU over the frames where it has a mask (Mask Scoring R-CNN's
    rescoring; 0 for a track with no mask); the inputs are not modified."""
    match track_score:
        case "quality":
            tracks = [dataclasses.replace(t, score=t.score * _mean_predicted_iou(t)) for t in tracks]
        case "class":
            tracks = [dataclasses.replace(t) for t in tracks]
        case _:
            raise ValueError(
                f"track_score must be one of {', '.join(choices(TrackScore))}, got {track_score!r}"
            )
    tracks.sort(key=lambda t: -t.score)
    for k, t in enumerate(tracks):
        t.id = k + 1
    return tracks


def _mean_predicted_iou(track: Track) -> float:
    if track.predicted_iou is None:
        raise ValueError(
            "inference.track_score=quality needs the quality head's predicted IoU; this model has no quality "
            "head (use inference.track_score=class)"
        )
    values = [
        p for m, p in zip(track.masks, track.predicted_iou, strict=True) if m is not None and rle.area(m) > 0
    ]
    return float(np.mean(values)) if values else 0.0


def results_json(video_tracks: VideoTracks, video_id: int) -> list[dict]:
    """YouTube-VIS result entries (an empty frame is an all-zero RLE, as the official writer does)."""
    info = video_tracks.video
    empty = rle.encode(np.zeros((info.height, info.width), bool))
    return [
        {
            "video_id": video_id,
            "video_name": info.name,
            "track_id": t.id,
            "score": float(t.score),
            "category_id": 1,
            "segmentations": [m if m is not None else empty for m in t.masks],
            **(
                {"predicted_ious": [float(v) for v in t.predicted_iou]} if t.predicted_iou is not None else {}
            ),
        }
        for t in video_tracks.tracks
    ]


def id_map(tracks: list[Track], t: int, hw: tuple[int, int], max_tracks: int = 20) -> np.ndarray:
    """Frame ``t`` of ``tracks`` as an id map: track k is painted with k + 1, the first track on top."""
    ids = np.zeros(hw, np.uint8)
    for k in reversed(range(min(len(tracks), max_tracks))):  # best score painted last, on top
        m = tracks[k].masks[t]
        if m is not None:
            ids[rle.decode(m)] = k + 1
    return ids


def write_davis_masks(video_tracks: VideoTracks, folder: Path, max_tracks: int = 20) -> None:
    info = video_tracks.video
    for t in range(info.length):
        write_mask_png(
            folder / f"{t:05d}.png", id_map(video_tracks.tracks, t, (info.height, info.width), max_tracks)
        )


def _color(track_id: int) -> np.ndarray:
    return DAVIS_PALETTE[1 + (track_id - 1) % 254].astype(np.float32)


def overlay_frames(frames: Iterable[np.ndarray], video_tracks: VideoTracks, max_tracks: int = 20):
    """Frames (H, W, 3) uint8 with every track drawn in a stable colour with its id and score."""
    tracks = video_tracks.tracks[:max_tracks]
    for t, frame in enumerate(frames):
        img = frame.astype(np.float32)
        labels = []
        for track in reversed(tracks):
            m = track.masks[t]
            if m is None:
                continue
            mask = rle.decode(m)
            if not mask.any():
                continue
            img[mask] = 0.5 * img[mask] + 0.5 * _color(track.id)
            ys, xs = np.nonzero(mask)
            labels.append((track, int(xs.min()), int(ys.min())))
        out = img.astype(np.uint8)
        for track, x, y in labels:
            text = f"{track.id} {track.score:.2f}"
            color = tuple(int(c) for c in _color(track.id))
            cv2.putText(
                out, text, (x, max(y - 4, 12)), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 3, cv2.LINE_AA
            )
            cv2.putText(out, text, (x, max(y - 4, 12)), cv2.FONT_HERSHEY_SIMPLEX, 0.5, color, 1, cv2.LINE_AA)
        yield out


def write_overlay(
    frames: Iterable[np.ndarray], video_tracks: VideoTracks, path: Path, fps: float = 10.0, gif: bool = False
) -> Path:
    """An MP4 (H.264 via PyAV; even frame sizes) of the overlay; with ``gif`` also a GIF beside it."""
    import av
    from PIL import Image

    gif_frames = []
    with atomic_path(path, suffix=".mp4") as tmp, av.open(str(tmp), mode="w", format="mp4") as container:
        stream = None
        for img in overlay_frames(frames, video_tracks):
            h, w = (
                img.shape[:2]
                if img.shape[0] % 2 == 0 and img.shape[1] % 2 == 0
                else (img.shape[0] // 2 * 2, img.shape[1] // 2 * 2)
            )
            if stream is None:
                stream = container.add_stream("libx264", rate=round(fps))
                stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
            container.mux(
                stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(img[:h, :w]), format="rgb24"))
            )
            if gif:
                small = Image.fromarray(img)
                small.thumbnail((480, 480))
                gif_frames.append(small)
        if stream is not None:
            container.mux(stream.encode(None))
    if gif and gif_frames:
        with atomic_path(path.with_suffix(".gif"), suffix=".gif") as tmp:
            gif_frames[0].save(
                tmp,
                format="GIF",
                save_all=True,
                append_images=gif_frames[1:],
                duration=int(1000 / fps),
                loop=0,
            )
    return path


def prediction_unit(out: Path, name: str) -> Unit:
    """One video's outputs in a ``predict`` folder as a resumable unit."""
    return Unit(
        f"the predictions of video {name}",
        out / "fingerprints" / f"{name}.json",
        (
            out / "results" / f"{name}.json",
            out / "masks" / name,
            out / "overlays" / f"{name}.mp4",
            out / "overlays" / f"{name}.gif",
        ),
    )


@dataclass
class PredictionRun:
    """``autoqvis predict`` over a list of videos into ``out``, resumable per video.

    ``settings``: what determines every video's outputs besides the video itself (the weights' identity, the
    architecture asked for; ``inference`` is added, all but the device). Each video's fingerprint is that
    plus the video's identity (:func:`~autoqvis.io.fingerprint.stat_identity`). ``max_png_tracks``: tracks
    painted into the DAVIS PNGs (``evaluation.davis_max_proposals``)."""

    videos: list[Path]
    out: Path
    inference: InferenceConfig
    settings: dict
    resume: bool = True
    skip_bad: bool = False
    max_png_tracks: int = EvaluationConfig.davis_max_proposals
    report: SkipReport = dataclasses.field(default_factory=SkipReport)

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        self.names: dict[Path, str] = {}
        for video in self.videos:
            with _hint_skip_bad(self.skip_bad), skip_bad_input(str(video), self.report, self.skip_bad):
                self.names[video] = open_video(video).name
        names = list(self.names.values())
        if len(set(names)) != len(names):
            dup = next(n for n in names if names.count(n) > 1)
            raise DataError(f"two inputs are both named {dup!r}; give the videos distinct names")
        if not self.names:
            raise DataError(f"no readable video among {len(self.videos)} input(s)\n{self.report.summary()}")

    def fingerprint(self, video: Path) -> dict:
        options = {k: v for k, v in config_to_dict(self.inference).items() if k != "device"}
        options["max_png_tracks"] = self.max_png_tracks
        return {**self.settings, "inference": options, "video": stat_identity(video)}

    def check(self) -> None:
        """Raise :class:`~autoqvis.errors.StaleOutputError` if any video's outputs were made with other
        settings (only when resuming); writes nothing (call it before the config is saved)."""
        if self.resume:
            for video, name in self.names.items():
                open_unit(prediction_unit(self.out, name), self.fingerprint(video), True, write=False)

    def run(self, model, overlays: bool = True, rank: int = 0, world_size: int = 1) -> list[dict]:
        """Segment this rank's share of the videos (those not finished with these settings), writing each
        video's outputs; rank 0 gathers ``predictions.json`` (the videos finished so far)."""
        if not self.resume and rank == 0:  # it gathers the results of the run being started over
            (self.out / "predictions.json").unlink(missing_ok=True)
        todo = list(self.names.items())[rank::world_size]
        for video, name in todo:
            result_path = self.out / "results" / f"{name}.json"
            resumed = open_unit(prediction_unit(self.out, name), self.fingerprint(video), self.resume)
            if resumed and result_path.is_file():
                log.info("%s: already done with these settings, skipping", name)
                continue
            with _hint_skip_bad(self.skip_bad), skip_bad_input(name, self.report, self.skip_bad):
                self._predict_one(model, video, name, overlays)
        if self.report:
            log.warning(self.report.summary())
        return self.gather() if rank == 0 else []

    def gather(self) -> list[dict]:
        """``predictions.json``: every finished video's results, ``video_id`` its position in the input list."""
        gathered = []
        for index, video in enumerate(self.videos):
            path = self.out / "results" / f"{self.names.get(video)}.json"
            if video in self.names and path.is_file():
                for entry in _read_result(path):
                    gathered.append({**entry, "video_id": index + 1})
        atomic_write_json(self.out / "predictions.json", gathered)
        return gathered

    def _predict_one(self, model, video: Path, name: str, overlays: bool) -> None:
        from autoqvis.progress import progress_bar

        inference = self.inference
        n = len(open_video(video, inference.short_side, inference.max_size))
        window = inference.window if 0 < inference.window < n else n
        windows = len(
            stream_windows(n, window, min(inference.overlap, max(window - 1, 0)) if window < n else 0)
        )
        with progress_bar(name, total=windows) as bar:
            vt = segment_video(model, video, inference, on_window=bar.advance)
        write_davis_masks(vt, self.out / "masks" / name, self.max_png_tracks)
        if overlays:
            write_overlay(
                iter(open_video(video)), vt, self.out / "overlays" / f"{name}.mp4", gif=vt.video.length <= 60
            )
        atomic_write_json(
            self.out / "results" / f"{name}.json", results_json(vt, self.videos.index(video) + 1)
        )
        log.info("%s: %d frames, %d tracks", name, vt.video.length, len(vt.tracks))


@contextlib.contextmanager
def _hint_skip_bad(skip_bad: bool):
    """A bad video stops the run unless ``--skip-bad``: say so."""
    try:
        yield
    except DataError as err:
        if skip_bad:
            raise
        raise DataError(f"{err} (pass --skip-bad to skip unreadable videos and predict the others)") from err


def _read_result(path: Path) -> list[dict]:
    try:
        data = load_json(path)
    except DataError as err:
        raise DataError(
            f"{err}; it is a finished video's result file: delete it (the video is predicted again) or rerun with "
            "--no-resume"
        ) from err
    if not isinstance(data, list):
        raise DataError(f"{path} is not a list of results; delete it (the video is predicted again)")
    return data
