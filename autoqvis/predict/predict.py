"""Segment and track every object in videos: whole-video or streaming inference, and the files it writes.

Whole-video mode is the reference's: every frame (resized to short side 360) in one clip, the top-k queries
as tracks, masks at the original size. Streaming mode cuts long videos into overlapping windows linked by
:mod:`autoqvis.predict.streaming`; memory is bounded by the window, not the video.

Per video, ``autoqvis predict`` writes into ``OUT``:

- ``results/<video>.json``: YouTube-VIS results (RLE per frame, score, per-frame predicted quality), written
  atomically when the video is done, with ``fingerprints/<video>.json`` (the weights' identity, the
  inference settings and the video's identity): a rerun skips videos finished with the same fingerprint and stops on
  ones made with another (:mod:`autoqvis.runs.fingerprint`); ``predictions.json`` gathers every video of
  the folder predicted with these settings, earlier calls' included, with ``video_name`` and a
  ``video_id`` that stays the video's (``video_ids.json``; see :class:`PredictionRun`);
- ``masks/<video>/<frame>.png``: DAVIS palette PNGs, track k+1 painted with the k-th best score on top
  (at most 20 tracks, as the DAVIS-2017 unsupervised protocol reads them); ``<frame>`` is the frame's own
  file name for a frame folder (``00010.png`` for ``00010.jpg``), its position for a video file;
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
from autoqvis.config import EvaluationConfig, InferenceConfig, inference_settings
from autoqvis.device import autocast_dtype, resolve_amp
from autoqvis.errors import DataError, StaleOutputError
from autoqvis.io.davis import DAVIS_PALETTE, write_mask_png
from autoqvis.io.video import (
    SkipReport,
    VideoSource,
    natural_key,
    open_video,
    skip_bad_input,
    video_identity,
)
from autoqvis.io.ytvis import load_json
from autoqvis.predict.ranking import rank_tracks
from autoqvis.predict.refine import crf_refine_tracks
from autoqvis.predict.streaming import WindowResult, run_streaming, stream_windows
from autoqvis.runs.atomic import atomic_path, atomic_write_json
from autoqvis.runs.fingerprint import (
    Unit,
    as_stored,
    check_start_over,
    damaged_message,
    describe_changes,
    open_unit,
    stored_fingerprint,
)
from autoqvis.runs.step import step
from autoqvis.structures import Track, VideoInfo, VideoTracks

__all__ = [
    "PredictionRun",
    "check_track_score",
    "differs_from_model",
    "finish_tracks",
    "id_map",
    "open_source",
    "predict_video",
    "prediction_unit",
    "raw_settings",
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


# the inference fields the network's raw tracks depend on (besides the device); the others finish them
RAW_FIELDS = ("short_side", "max_size", "top_k", "window", "overlap", "amp")


def raw_settings(inference: InferenceConfig) -> dict:
    """The settings of ``inference`` that :func:`segment_video`'s raw tracks depend on (for a fingerprint of
    raw tracks: the ranking and the CRF of :func:`finish_tracks` do not change them)."""
    return {k: v for k, v in inference_settings(inference).items() if k in RAW_FIELDS}


def open_source(video: VideoSource | str | Path, inference: InferenceConfig) -> VideoSource:
    """``video`` as a :class:`VideoSource`: a path opened at ``inference.short_side`` / ``max_size``, a source
    as given."""
    if isinstance(video, VideoSource):
        return video
    return open_video(video, inference.short_side, inference.max_size)


@torch.no_grad()
def segment_video(
    model,
    video: VideoSource | str | Path,
    inference: InferenceConfig | None = None,
    on_window: Callable[[], None] | None = None,
) -> VideoTracks:
    """The network's raw tracks of one video (RLE at the original frame size), whole-video or streaming: no
    ranking rule and no CRF (that is :func:`finish_tracks`). The tracks come in the order of their class score
    (the query's foreground probability, averaged over the windows of a streamed video), best first, numbered
    1..n: the order :func:`~autoqvis.predict.ranking.rank_tracks` gives for ``track_score=class``.

    Of ``inference`` (default: the section's defaults) only :data:`RAW_FIELDS` count; the model runs where it
    is (not the config's ``device``). ``video``: a path (opened at ``inference.short_side``) or a
    :class:`VideoSource` used as given."""
    inference = inference or InferenceConfig()
    source = open_source(video, inference)
    original = source.frame_size()
    num_frames = len(source)
    window = inference.window if 0 < inference.window < num_frames else num_frames
    overlap = min(inference.overlap, window - 1) if window < num_frames else 0
    segment = window_segmenter(model, inference, original)
    tracks = run_streaming(iter(source), num_frames, segment, window, overlap, original, on_window)
    tracks = sorted(tracks, key=lambda t: -t.score)  # stable: the streaming order among equal scores
    for k, track in enumerate(tracks):
        track.id = k + 1
    info = VideoInfo(id=0, width=original[1], height=original[0], length=num_frames, name=source.name)
    return VideoTracks(video=info, tracks=tracks)


def finish_tracks(
    tracks: list[Track], source: VideoSource, inference: InferenceConfig, track_score: str | None = None
) -> list[Track]:
    """The finishing of raw tracks (:func:`segment_video`) into outputs: ranked by ``track_score`` (default
    ``inference.track_score``; :mod:`autoqvis.predict.ranking`) and, with ``inference.crf_short_side`` > 0,
    the best ``inference.crf_max_tracks`` tracks' masks refined by the dense CRF on ``source``'s frames (new
    tracks; the inputs are not modified). ``predict``, ``autoqvis.segment``, scoring a model and the
    benchmarks call it with the inference section they run."""
    tracks = rank_tracks(tracks, track_score or inference.track_score, source.frame_size())
    if inference.crf_short_side > 0:
        best = inference.crf_max_tracks
        tracks = crf_refine_tracks(tracks[:best], source, inference.crf_short_side) + tracks[best:]
    return tracks


def predict_video(
    model,
    video: VideoSource | str | Path,
    inference: InferenceConfig | None = None,
    on_window: Callable[[], None] | None = None,
) -> VideoTracks:
    """A video's output tracks: :func:`segment_video`'s raw tracks finished by :func:`finish_tracks`, both
    with ``inference`` (default: the section's defaults)."""
    inference = inference or InferenceConfig()
    source = open_source(video, inference)
    raw = segment_video(model, source, inference, on_window)
    return VideoTracks(video=raw.video, tracks=finish_tracks(raw.tracks, source, inference))


def differs_from_model(own: InferenceConfig | None, used: InferenceConfig) -> str:
    """One line naming the inference settings of ``used`` that differ from those the model was made for
    (``own``: ``model.own_inference``, a model folder's ``inference.json``); empty when none differ or the model
    carries none."""
    if own is None:
        return ""
    mine, theirs = inference_settings(own), inference_settings(used)
    changed = [f"{k} {mine[k]} -> {theirs[k]}" for k in mine if mine[k] != theirs[k]]
    if not changed:
        return ""
    return "inference settings differ from the model's own (its inference.json): " + ", ".join(changed)


def check_track_score(model, track_score: str, weights: str | Path = "the model") -> None:
    """Ranking by quality (``quality``, ``main``) needs the quality head's predicted IoU: a model without the
    head is refused before any video is read (every track would otherwise score the same)."""
    if track_score != "class" and model.spec.quality_head is None:
        raise DataError(
            f"inference.track_score={track_score} ranks tracks by the quality head's predicted IoU, but {weights} "
            "has no quality head (a VideoCutLER-style model); set inference.track_score=class, or pass a model "
            "with the quality head"
        )


def results_json(video_tracks: VideoTracks, video_id: int) -> list[dict]:
    """YouTube-VIS result entries (an empty frame is an all-zero RLE, as the official writer does)."""
    info = video_tracks.video
    for t in video_tracks.tracks:  # JSON has no NaN: a result file must never hold one
        values = [t.score, *(t.predicted_iou or [])]
        if not np.isfinite(values).all():
            raise DataError(
                f"video {info.name}: the model gave a NaN or infinite score (track {t.id}); its weights are damaged "
                "or the precision overflowed (try inference.amp=off); nothing was written for this video"
            )
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


def write_davis_masks(
    video_tracks: VideoTracks, folder: Path, max_tracks: int = 20, frame_names: list[str] | None = None
) -> None:
    """``folder/<frame>.png`` per frame: ``frame_names`` (a frame folder's own names, so that DAVIS
    evaluation matches each mask to its frame whatever the numbering), else ``00000``, ``00001``, ..."""
    info = video_tracks.video
    names = frame_names or [f"{t:05d}" for t in range(info.length)]
    if len(names) != info.length:
        raise ValueError(f"{len(names)} frame names for a video of {info.length} frames")
    for t, name in enumerate(names):
        write_mask_png(
            folder / f"{name}.png", id_map(video_tracks.tracks, t, (info.height, info.width), max_tracks)
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
    plus the video's identity (:func:`~autoqvis.io.video.video_identity`: the frames its reader reads, by
    name and content). ``max_png_tracks``: tracks painted into the DAVIS PNGs (``evaluation.davis_max_proposals``).

    A folder gathers the videos of one setting: a call on some of the videos adds to what is there
    (``predictions.json`` indexes every video of the folder predicted with these settings), and each video
    keeps the id it got first (``video_ids.json``: a new video gets the next free id; in a new folder the
    ids follow the input order). A call with other settings than the folder's other videos stops, naming
    what changed; with ``--no-resume`` it predicts its own videos again and leaves the others on disk, out
    of ``predictions.json`` (:attr:`other_settings` names them)."""

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
        self.ids = _video_ids(self.out, names)
        self.other_settings: list[str] = []  # videos of the folder made with other settings (see check)
        self.unreadable: set[Path] = set()  # videos whose frames cannot be read (skipped with --skip-bad)

    def fingerprint(self, video: Path) -> dict:
        return {**self.common(), "video": video_identity(video)}

    def common(self) -> dict:
        """The fingerprint part every video of the folder shares (all but the video's identity)."""
        options = inference_settings(self.inference)
        options["max_png_tracks"] = self.max_png_tracks
        return {**self.settings, "inference": options}

    def check(self) -> None:
        """Raise :class:`~autoqvis.errors.StaleOutputError` if any video's outputs, or another video of the
        folder, were made with other settings (only when resuming); with ``resume`` False, refuse when
        starting a video over would remove an input. Writes nothing (call it before the config is saved)."""
        mine = set(self.names.values())
        self.other_settings, change = self._others_made_otherwise(mine)
        for video, name in list(self.names.items()):
            unit = prediction_unit(self.out, name)
            if not self.resume:
                check_start_over(unit)
                continue
            with _hint_skip_bad(self.skip_bad), skip_bad_input(name, self.report, self.skip_bad):
                open_unit(unit, self.fingerprint(video), True, write=False)  # a FIFO frame is refused here
                continue
            self.unreadable.add(video)  # skipped (--skip-bad): said in the report, not predicted
        if self.resume and self.other_settings:
            others = self.other_settings
            listed = ", ".join(others[:5]) + (f" and {len(others) - 5} more" if len(others) > 5 else "")
            raise StaleOutputError(
                f"{self.out} holds the predictions of {listed} made with other settings: {change}. A folder's "
                "predictions.json gathers the videos of one setting: pass a new --out for these settings, or add "
                "--no-resume to predict these videos with them (the others stay on disk, out of predictions.json)"
            )

    def _others_made_otherwise(self, mine: set[str]) -> tuple[list[str], str]:
        """The folder's finished videos outside this call whose settings differ, and the first difference."""
        folder = self.out / "fingerprints"
        if not folder.is_dir():
            return [], ""
        common = as_stored(self.common())
        others, change = [], ""
        for path in sorted(folder.glob("*.json"), key=lambda p: natural_key(p.stem)):
            name = path.stem
            if name in mine or not (self.out / "results" / f"{name}.json").is_file():
                continue
            damaged = damaged_message(
                path, f"the predictions of video {name}", f"{self.out}/results/{name}.json"
            )
            if damaged is not None and self.resume:
                raise DataError(damaged)
            if damaged is not None:  # --no-resume: left out of predictions.json like other settings
                others.append(name)
                change = change or "its fingerprint file is damaged"
                continue
            stored = stored_fingerprint(path)
            stored = {k: v for k, v in (stored or {}).items() if k != "video"}
            if stored != common:
                others.append(name)
                change = change or describe_changes(stored, common)
        return others, change

    def run(self, model, overlays: bool = True, rank: int = 0, world_size: int = 1) -> list[dict]:
        """Segment this rank's share of the videos (those not finished with these settings), writing each
        video's outputs; rank 0 gathers ``predictions.json`` (the folder's videos finished with these
        settings)."""
        if rank == 0:
            atomic_write_json(self.out / "video_ids.json", self.ids)
        todo = [(v, n) for v, n in self.names.items() if v not in self.unreadable][rank::world_size]
        for video, name in todo:
            result_path = self.out / "results" / f"{name}.json"
            unit = prediction_unit(self.out, name)
            with (
                _hint_skip_bad(self.skip_bad),
                skip_bad_input(name, self.report, self.skip_bad),
                step(
                    unit,
                    self.fingerprint(video),
                    self.resume,
                    recheck=lambda video=video: self.fingerprint(video),  # a frame replaced meanwhile
                    finished=result_path.is_file,
                ) as opened,
            ):
                if opened.done:
                    log.info("%s: already done with these settings, skipping", name)
                    continue
                self._predict_one(model, video, name, overlays)
        if self.report:
            log.warning(self.report.summary())
        return self.gather() if rank == 0 else []

    def gather(self) -> list[dict]:
        """``predictions.json``: every finished video of the folder predicted with these settings (this
        call's and earlier calls'), in id order, ``video_id`` its stable id."""
        gathered = []
        others = set(self.other_settings)
        for name, video_id in sorted(self.ids.items(), key=lambda item: item[1]):
            path = self.out / "results" / f"{name}.json"
            if name in others or not path.is_file():
                continue
            for entry in _read_result(path):
                gathered.append({**entry, "video_id": video_id})
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
            vt = predict_video(model, video, inference, on_window=bar.advance)
        results = results_json(vt, self.ids[name])  # checked before anything is written
        frame_names = open_video(video).frame_names()  # masks named as the frames they belong to
        write_davis_masks(vt, self.out / "masks" / name, self.max_png_tracks, frame_names)
        if overlays:
            write_overlay(
                iter(open_video(video)), vt, self.out / "overlays" / f"{name}.mp4", gif=vt.video.length <= 60
            )
        atomic_write_json(self.out / "results" / f"{name}.json", results)
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


def _video_ids(out: Path, names: list[str]) -> dict[str, int]:
    """Every video's id in ``out``: the ones ``video_ids.json`` records, then ``names`` not yet in it with the
    next free ids, in order. A folder of an older autoqvis (results without the file) numbers its videos in
    natural order first."""
    path = out / "video_ids.json"
    ids: dict[str, int] = {}
    if path.is_file():
        try:
            data = load_json(path)
            if not isinstance(data, dict) or not all(
                isinstance(v, int) and not isinstance(v, bool) for v in data.values()
            ):
                raise DataError(f"{path}: expected an object of video name -> integer id")
            if len(set(data.values())) != len(data):  # two videos under one id would mix their results
                raise DataError(f"{path}: two videos have the same id; each video needs its own")
        except DataError as err:
            raise DataError(
                f"{err}; it keeps every video's id in {out}: delete it (ids are then given again, in natural order "
                "of the videos there) or pass another --out"
            ) from err
        ids = dict(data)
    elif (out / "results").is_dir():
        earlier = sorted((p.stem for p in (out / "results").glob("*.json")), key=natural_key)
        ids = {name: i for i, name in enumerate(earlier, start=1)}
    for name in names:
        if name not in ids:
            ids[name] = max(ids.values(), default=0) + 1
    return ids


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
