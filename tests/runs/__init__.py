"""Unit tests of the run bookkeeping: path checks, file lists, locks, the resumable-step helper, sampling."""
