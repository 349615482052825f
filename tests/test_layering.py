"""The package's layers: frontends/ -> ir/ -> passes/ -> backends/. Passes that choose kernels belong to their
back end (backends/<target>/passes); passes/ holds only target-neutral rewrites and never imports from backends/.
Checked on the source (every import statement, lazy ones inside functions included) so that a new import
anywhere in passes/ is caught even if no test runs it."""
import ast
from pathlib import Path

import pysofie

PKG = Path(pysofie.__file__).resolve().parent


def _imports(path: Path):
    """(line, absolute dotted module) of every import in a module of the pysofie package."""
    mod = path.relative_to(PKG.parent).with_suffix("").parts
    pkg = mod[:-1] if path.name != "__init__.py" else mod[:-1]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for a in node.names:
                yield node.lineno, a.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg[:len(pkg) - (node.level - 1)]
                name = ".".join(base + ((node.module,) if node.module else ()))
            else:
                name = node.module or ""
            yield node.lineno, name
            for a in node.names:  # "from .. import backends"
                yield node.lineno, f"{name}.{a.name}"


def test_passes_never_import_backends():
    bad = [f"{p.relative_to(PKG)}:{line}: {name}" for p in sorted((PKG / "passes").rglob("*.py"))
           for line, name in _imports(p) if name == "pysofie.backends" or name.startswith("pysofie.backends.")]
    assert not bad, "passes/ imports from backends/:\n" + "\n".join(bad)


def test_layering_check_sees_relative_imports():
    """The check above resolves relative imports: a back-end pass module's imports resolve to pysofie.*."""
    names = {n for _, n in _imports(PKG / "backends" / "cpp" / "passes" / "fusion.py")}
    assert "pysofie.passes.manager" in names and "pysofie.ir" in names

