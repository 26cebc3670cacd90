"""VideoSetCriterion behaviour on random outputs: gradients, key layout, draws, config mapping, errors."""

from __future__ import annotations

import pytest
import torch

from autoqvis.config import TrainingConfig
from autoqvis.losses.criterion import (
    VideoSetCriterion,
    average_num_masks,
    build_criterion,
    criterion_flags_from_reference,
)
from autoqvis.losses.matcher import VideoHungarianMatcher
from autoqvis.structures import DecoderOutput, RoundOutput

B, Q, T, NUM_AUX, P = 2, 6, 3, 2, 32


def _round(gen: torch.Generator) -> RoundOutput:
    return RoundOutput(
        logits=torch.randn(B, Q, 2, generator=gen).requires_grad_(),
        masks=(torch.randn(B, Q, T, 8, 10, generator=gen) * 2).requires_grad_(),
        quality=torch.rand(B, Q, T, 1, generator=gen).requires_grad_(),
    )


def _batch(seed: int = 0, tracks: tuple[int, ...] = (2, 1)) -> tuple[DecoderOutput, list[dict]]:
    gen = torch.Generator().manual_seed(seed)
    final = _round(gen)
    outputs = DecoderOutput(*final, embeddings=None, aux=tuple(_round(gen) for _ in range(NUM_AUX)))
    targets = []
    for n in tracks:
        masks = (torch.rand(n, T, 32, 40, generator=gen) > 0.7).to(torch.uint8)
        targets.append(
            {"labels": torch.zeros(n, dtype=torch.int64), "ids": torch.zeros(n, T), "masks": masks}
        )
    return outputs, targets


def _cfg(**changes) -> TrainingConfig:
    return TrainingConfig(num_points=P, **changes)


def _leaves(outputs: DecoderOutput) -> list[tuple[str, torch.Tensor]]:
    rounds = [("", outputs)] + [(f"_{i}", aux) for i, aux in enumerate(outputs.aux)]
    return [(k + s, getattr(r, k)) for s, r in rounds for k in ("logits", "masks", "quality")]


def test_gradients_reach_every_output_of_every_round() -> None:
    outputs, targets = _batch()
    losses = build_criterion(_cfg())(outputs, targets)
    sum(losses.values()).backward()
    for name, leaf in _leaves(outputs):
        assert leaf.grad is not None and float(leaf.grad.abs().sum()) > 0, name


def test_frozen_head_has_no_quality_loss_nor_gradient() -> None:
    outputs, targets = _batch()
    criterion = build_criterion(_cfg(freeze_quality_head=True, droploss=True))
    assert criterion.quality_loss is None and criterion.droploss
    losses = criterion(outputs, targets)
    assert not any(k.startswith("loss_maskiou") for k in losses)
    sum(losses.values()).backward()
    for name, leaf in _leaves(outputs):
        assert (leaf.grad is None) == name.startswith("quality"), name


def test_key_layout_and_weights() -> None:
    outputs, targets = _batch()
    criterion = build_criterion(_cfg())
    result = criterion.compute(outputs, targets)
    base = ["loss_ce", "loss_mask", "loss_dice", "loss_maskiou"]
    assert list(result.raw) == base + [f"{k}_{i}" for i in range(NUM_AUX) for k in base]
    weights = criterion.weight_dict(NUM_AUX)
    assert set(weights) == set(result.raw)
    for key, value in result.raw.items():
        assert torch.equal(result.weighted[key], value * weights[key])
    assert len(result.indices) == 1 + NUM_AUX
    assert torch.equal(result.total, sum(result.weighted.values()))


def test_without_deep_supervision_aux_outputs_are_ignored() -> None:
    outputs, targets = _batch()
    calls = []

    def rand(*shape, device=None, dtype=None):
        calls.append(shape)
        return torch.rand(*shape, device=device, dtype=dtype)

    result = build_criterion(_cfg(deep_supervision=False)).compute(outputs, targets, rand=rand)
    assert list(result.raw) == ["loss_ce", "loss_mask", "loss_dice", "loss_maskiou"]
    num_pairs = sum(len(t["labels"]) for t in targets) * T  # matched (track, frame) pairs
    assert calls == [(1, P, 2)] * B + [(num_pairs, 3 * P, 2), (num_pairs, P - int(0.75 * P), 2)]


def test_default_rand_follows_the_global_seed() -> None:
    outputs, targets = _batch()
    criterion = build_criterion(_cfg())
    torch.manual_seed(3)
    first = {k: v.item() for k, v in criterion(outputs, targets).items()}
    torch.manual_seed(3)
    second = {k: v.item() for k, v in criterion(outputs, targets).items()}
    assert first == second


def test_autocast_does_not_change_the_losses() -> None:
    outputs, targets = _batch()
    criterion = build_criterion(_cfg())
    torch.manual_seed(4)
    plain = criterion(outputs, targets)
    torch.manual_seed(4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = criterion(outputs, targets)
    assert all(mixed[k].dtype == torch.float32 and torch.equal(mixed[k], plain[k]) for k in plain)


def test_half_precision_outputs_are_computed_in_float32() -> None:
    outputs, targets = _batch()
    criterion = build_criterion(_cfg(deep_supervision=False))
    low = DecoderOutput(*(v.detach().to(torch.bfloat16) for v in outputs.rounds()[-1]), embeddings=None)
    high = DecoderOutput(*(v.float() for v in low.rounds()[-1]), embeddings=None)
    torch.manual_seed(5)
    a = criterion(low, targets)
    torch.manual_seed(5)
    b = criterion(high, targets)
    assert all(a[k].dtype == torch.float32 and torch.allclose(a[k], b[k], rtol=1e-6) for k in b)


def test_no_tracks_gives_finite_losses_and_normaliser_one() -> None:
    outputs, targets = _batch(tracks=(0, 0))
    result = build_criterion(_cfg()).compute(outputs, targets)
    assert result.num_masks == 1.0
    assert result.raw["loss_mask"].item() == 0.0 and result.raw["loss_dice"].item() == 0.0
    assert all(torch.isfinite(v) for v in result.raw.values())
    result.total.backward()
    assert outputs.logits.grad is not None and torch.isfinite(outputs.logits.grad).all()


def test_build_criterion_maps_the_training_config() -> None:
    criterion = build_criterion(
        _cfg(quality_loss="matched", no_object_weight=0.2, droploss_tau=0.05), num_classes=3
    )
    assert criterion.quality_loss == "matched" and criterion.droploss_tau == 0.05
    assert criterion.empty_weight.tolist() == pytest.approx([1.0, 1.0, 1.0, 0.2])
    matcher = criterion.matcher
    assert (matcher.cost_class, matcher.cost_mask, matcher.cost_dice, matcher.num_points) == (
        2.0,
        5.0,
        5.0,
        P,
    )
    assert list(criterion.state_dict()) == ["empty_weight"]


def test_reference_loss_lists() -> None:
    assert criterion_flags_from_reference(["labels", "masks", "maskiou_all"]) == {
        "droploss": False,
        "quality_loss": "all",
    }
    assert criterion_flags_from_reference(["labels", "masks_drop"]) == {
        "droploss": True,
        "quality_loss": None,
    }
    assert criterion_flags_from_reference(["labels", "masks_drop", "maskiou_drop"]) == {
        "droploss": True,
        "quality_loss": "matched",
    }
    with pytest.raises(ValueError, match="maskiou_bal"):
        criterion_flags_from_reference(["labels", "masks", "maskiou_bal"])
    with pytest.raises(ValueError, match="needs 'labels'"):
        criterion_flags_from_reference(["masks"])


def _with_aux(out: DecoderOutput, i: int, **changes) -> DecoderOutput:
    aux = list(out.aux)
    aux[i] = aux[i]._replace(**changes)
    return out._replace(aux=tuple(aux))


def _drop_last_frame(out: DecoderOutput) -> DecoderOutput:
    return _with_aux(out, 0, masks=out.aux[0].masks[:, :, :-1], quality=out.aux[0].quality[:, :, :-1])


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda o, t: o._replace(logits=o.logits[..., :1]), r"outputs.logits must be"),
        (lambda o, t: o._replace(masks=o.masks[:, :, 0]), r"outputs.masks must be"),
        (lambda o, t: t.pop() and o, "one target dict per video"),
        (lambda o, t: t[0].update(masks=t[0]["masks"][:, :2]) or o, r"targets\[0\]\['masks'\]"),
        (lambda o, t: t[1].update(labels=torch.tensor([1])) or o, r"must lie in \[0, 1\)"),
        (lambda o, t: o._replace(masks=None), "outputs needs masks"),
        (lambda o, t: _with_aux(o, 1, masks=None), r"outputs.aux\[1\] needs masks"),
        (lambda o, t: _drop_last_frame(o), "must share"),
        (lambda o, t: o._replace(quality=o.quality[..., 0]), r"outputs.quality must be"),
    ],
)
def test_bad_inputs_raise_clear_errors(mutate, message) -> None:
    outputs, targets = _batch()
    outputs = mutate(outputs, targets)
    with pytest.raises(ValueError, match=message):
        build_criterion(_cfg())(outputs, targets)


def test_rejects_unknown_quality_variant() -> None:
    with pytest.raises(ValueError, match="quality_loss"):
        VideoSetCriterion(
            1, VideoHungarianMatcher(2, 5, 5, 8), 2, 5, 5, 20, 0.1, 8, 3.0, 0.75, quality_loss="best"
        )


def test_normaliser_without_distributed_is_the_local_count_at_least_one() -> None:
    assert (
        average_num_masks([{"labels": torch.zeros(3)}, {"labels": torch.zeros(2)}], torch.device("cpu"))
        == 5.0
    )
    assert average_num_masks([{"labels": torch.zeros(0)}], torch.device("cpu")) == 1.0
