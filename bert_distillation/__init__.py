"""The machinery behind the stage scripts; nothing here is run on its own.

The entry scripts at the repository root (the stages, `run_classifier.py`,
`convert_checkpoint.py`, `run_demo.py`) and Google's `modeling.py`,
`optimization.py` and `tokenization.py` are what a user runs and imports; the
modules of this package are what they share. README.md has a one-line map of
each module.
"""
