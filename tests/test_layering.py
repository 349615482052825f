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



def test_cpu_kernel_choices_live_in_the_cpp_back_end():
    import pysofie.passes as neutral
    from pysofie.api import target_passes
    cpp = {type(p).__module__ for p in target_passes("cpp")}
    assert any(m.startswith("pysofie.backends.cpp.passes") for m in cpp)
    for p in target_passes("cuda"):  # the CUDA target uses no CPU kernel choice
        assert not type(p).__module__.startswith("pysofie.backends.cpp"), type(p)
    assert not hasattr(neutral, "optimization_passes")


def _module_graph():
    graph = {}
    for p in PKG.rglob("*.py"):
        mod = ".".join(p.relative_to(PKG.parent).with_suffix("").parts)
        mod = mod[:-len(".__init__")] if mod.endswith(".__init__") else mod
        graph[mod] = set()
        for _, name in _imports(p):
            while name and name != mod and name not in graph and not (PKG.parent / (name.replace(".", "/") + ".py")
                                                                      ).exists():
                name = name.rpartition(".")[0]  # "from .x import y": y is a name in module x
            if name.startswith("pysofie.") and name != mod and not (PKG.parent / name.replace(".", "/")).is_dir():
                graph[mod].add(name)
    return graph


def _layer(mod: str) -> str:
    """pysofie.passes, pysofie.backends.<target>.passes / .ops / .emitter..., pysofie.ir, ..."""
    parts = mod.split(".")
    return ".".join(parts[:4] if parts[1] == "backends" else parts[:2])


def _cycles(graph):
    """The strongly connected components with more than one module (Tarjan, iterative)."""
    index, low, on, stack, out, counter = {}, {}, set(), [], [], [0]
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter[0]
        counter[0] += 1
        stack.append(root)
        on.add(root)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is not None:
                if w not in graph:
                    continue
                if w not in index:
                    index[w] = low[w] = counter[0]
                    counter[0] += 1
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(graph[w]))))
                elif w in on:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    out.append(sorted(comp))
    return out


def test_no_import_cycle_between_passes_and_generators():
    """No chain of imports (lazy ones included) leads from a pass module through another layer (a back end's
    kernel generators, its emitter) back to itself: layout helpers that passes and generators share are imported
    one way only."""
    graph = _module_graph()
    assert "pysofie.backends.cpp.ops.conv" in graph["pysofie.backends.cpp.passes.fusion"]  # the check sees edges
    bad = [c for c in _cycles(graph) if any(".passes" in m for m in c) and len({_layer(m) for m in c}) > 1]
    assert not bad, "import cycles between layers: " + "; ".join(" <-> ".join(c) for c in bad)
