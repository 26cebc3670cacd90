"""Synthetic training videos from unlabeled images and their pseudo-masks (ImageCut2Video)."""
