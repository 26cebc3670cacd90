"""Training losses: Hungarian matching, CE, point-sampled BCE/Dice with DropLoss, and the quality loss."""

from autoqvis.losses.criterion import LossBreakdown, VideoSetCriterion, build_criterion
from autoqvis.losses.matcher import VideoHungarianMatcher
from autoqvis.losses.point_sampling import RandFn, importance_sample_points, make_rand, point_sample

__all__ = [
    "LossBreakdown",
    "RandFn",
    "VideoHungarianMatcher",
    "VideoSetCriterion",
    "build_criterion",
    "importance_sample_points",
    "make_rand",
    "point_sample",
]
