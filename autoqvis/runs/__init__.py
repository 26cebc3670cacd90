"""Run bookkeeping: atomic writes, input access, fingerprints, locks, output folders and the run layout.

io/ holds the data formats; this package holds what makes a command resumable and safe to rerun:

- ``access`` / ``paths``: what a path is, judged before it is opened (a FIFO, device, socket or dangling link
  is refused, never read or written); ``list_files``, the one file list an input's reader and its identity
  share;
- ``fingerprint``: what determines a unit of output; ``step``: the one resumable-step helper the stages call
  (open the unit, skip it while its recorded outputs are intact, check the inputs again at its end);
- ``lock`` / ``outputs``: one writer per output folder, one command per folder; ``layout``: the names of a
  run folder; ``atomic``: writes that never leave half a file.
"""
