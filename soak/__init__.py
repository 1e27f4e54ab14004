"""Soak runs: scripted fault injection against ``recorder capture``, each ending with a
ground-truth comparison against what the embedded venue says it sent.

``python -m soak [--minutes N] [--scenario NAME]`` runs the scenarios of
:mod:`soak.scenarios` and prints one line of figures per scenario; the exit code is non-zero
when any scenario fails its check. ``tests/test_soak.py`` runs shortened versions.

Modules: :mod:`soak.harness` (the venue on its own thread, the capture in a subprocess, the
write gate, RSS polling), :mod:`soak.capture_proc` (the capture with the knobs the CLI does
not have: short backoffs, a slow or held part-file writer), :mod:`soak.truth` (venue
frames ↔ journal ↔ store), :mod:`soak.frames` (the hypothesis grammar of malformed frames,
with the outcome each frame must have) and :mod:`soak.scenarios`.
"""
