"""One direction of imports: netsim uses the metadata service, never the reverse."""

from __future__ import annotations

import ast
import pathlib

import netsim_imds

ROOT = pathlib.Path(netsim_imds.__file__).parent


def netsim_imports(source: str) -> list[tuple[int, str]]:
    """``(line, module)`` of every import of ``netsim`` or ``netsim.*`` in ``source``
    (``netsim_imds`` is another package; relative imports stay inside it)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules = [node.module]
        else:
            continue
        found += [(node.lineno, m) for m in modules if m == "netsim" or m.startswith("netsim.")]
    return found


def test_no_module_of_the_metadata_service_imports_netsim() -> None:
    files = sorted(ROOT.rglob("*.py"))
    assert len(files) > 10 and ROOT.joinpath("azure", "api.py") in files
    offenders = [f"{path.relative_to(ROOT.parent)}:{line}: imports {module}"
                 for path in files for line, module in netsim_imports(path.read_text())]
    assert offenders == []


def test_the_scan_sees_every_form_of_import() -> None:
    source = ("import netsim\nimport os, netsim.kernel.netns as n\nfrom netsim.errors import NetsimError\n"
              "def f():\n    from netsim import state\nfrom netsim_imds import flavors\nfrom . import http\n"
              "import netsimulator\n")
    assert netsim_imports(source) == [(1, "netsim"), (2, "netsim.kernel.netns"), (3, "netsim.errors"),
                                      (5, "netsim")]


def test_netsim_errors_share_the_metadata_services_root() -> None:
    from netsim.errors import NetsimError, TopologyError
    from netsim_imds.driver import ServerError
    from netsim_imds.errors import NetsimError as Root
    from netsim_imds.http import ProtocolError
    assert NetsimError is Root
    assert issubclass(TopologyError, Root) and issubclass(ServerError, NetsimError)
    assert issubclass(ProtocolError, NetsimError)
