"""Run bookkeeping: atomic writes, input access, fingerprints, locks, output folders and the run layout.

io/ holds the data formats; this package holds what makes a command resumable and safe to rerun.
"""
