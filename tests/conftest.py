"""Shared test setup.

tests/ has no __init__.py, so pytest may put tests/ itself on sys.path, where the
folder tests/server would shadow the real ``server`` package as a namespace package.
The repository goes first on the path, and a namespace ``server`` imported by accident
is forgotten, so every test imports the real one.
"""

import pathlib
import sys

_ROOT = str(pathlib.Path(__file__).resolve().parents[1])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)
if "server" in sys.modules and getattr(sys.modules["server"], "__file__", None) is None:
    del sys.modules["server"]
