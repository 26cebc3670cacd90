"""Evaluation: YouTube-VIS metrics, DAVIS J&F and quality-predictor analysis."""
