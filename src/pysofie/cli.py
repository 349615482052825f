"""The `pysofie` command: emit, check, run, config."""
from __future__ import annotations

import argparse
import io
import sys


def _shape(text: str):
    try:
        return tuple(int(t) if t.strip().lstrip("-").isdigit() else t.strip() for t in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad shape '{text}': expected comma-separated sizes like 2,1,8,8")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pysofie", description="Trained models -> standalone C++ inference code.")
    p.add_argument("--version", action="version", version=f"pysofie {_version()}")
    p.add_argument("-v", "--verbose", action="store_true",
                   help="log every step with its timing (by default only compiles longer than a second are shown)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    sub = p.add_subparsers(dest="command", required=True)

    e = sub.add_parser("emit", help="write <name>.hxx and its weight file")
    e.add_argument("model", help="model file (.onnx, .h5, .keras, .pt)")
    e.add_argument("-o", "--output", required=True, help="output directory")
    e.add_argument("--name", help="model name (file names; namespace SOFIE_<name>)")
    e.add_argument("--namespace", help="C++ namespace (default SOFIE_<name>)")
    e.add_argument("--weights", choices=["bin", "dat", "embed", "root"], default=None,
                   help="weight storage: checksummed binary .bin (default, as in Python), SOFIE text .dat, "
                        "embedded in the header, or SOFIE's .root file (needs ROOT; then compile with "
                        "`pysofie config --root`)")
    e.add_argument("--input-shape", action="append", type=_shape, metavar="D0,D1,...",
                   help="input shape, once per input (needed for .pt files; a name instead of a number is a "
                        "symbolic size)")
    e.add_argument("--no-optimize", action="store_true", help="skip the optimization passes")
    e.add_argument("--target", choices=["cpp", "cuda"], default="cpp",
                   help="cpp: <name>.hxx for CPUs (default); cuda: <name>.cuh for NVIDIA GPUs (CUDA + cuBLAS)")

    c = sub.add_parser("check", help="list every unsupported operator (exit 1 if any)")
    c.add_argument("model")
    c.add_argument("--input-shape", action="append", type=_shape, metavar="D0,D1,...")
    c.add_argument("--target", choices=["cpp", "cuda"], default="cpp",
                   help="the back end to check against (cuda: operators without a GPU kernel)")

    r = sub.add_parser("run", help="compile and run the model on .npy inputs")
    r.add_argument("model")
    r.add_argument("--input", action="append", default=[], metavar="NAME=FILE.npy", help="an input, once per input")
    r.add_argument("-o", "--output", help="write the outputs to this .npz file")
    r.add_argument("--weights", choices=["bin", "dat", "embed", "root"], default=None,
                   help="weight storage (default bin: the code InferenceSession compiles, so the cache is shared)")
    r.add_argument("--input-shape", action="append", type=_shape, metavar="D0,D1,...")

    g = sub.add_parser("config", help="compiler flags for emitted code (like pkg-config)")
    g.add_argument("--cflags", action="store_true", help="flags to compile emitted code")
    g.add_argument("--libs", action="store_true", help="flags to link it against the BLAS (with an rpath)")
    g.add_argument("--blas", action="store_true", help="describe the BLAS pysofie found")
    g.add_argument("--root", action="store_true",
                   help="with --cflags/--libs: also ROOT's (code emitted with --weights root reads them with TFile)")
    return p


def _version() -> str:
    from . import __version__
    return __version__


def cmd_emit(a) -> int:
    from .api import DEFAULT_WEIGHTS, emit
    paths = emit(a.model, a.output, name=a.name, weights=a.weights or DEFAULT_WEIGHTS, namespace=a.namespace,
                 input_shapes=a.input_shape, optimize=not a.no_optimize, target=a.target)
    print(f"wrote {paths['header']}" + (f" and {paths['weights']}" if paths["weights"] else "")
          + f" (namespace {paths['namespace']})")
    return 0


def cmd_check(a) -> int:
    from .api import check
    problems = check(a.model, input_shapes=a.input_shape, target=a.target)
    where = " for the CUDA target" if a.target == "cuda" else ""
    if problems:
        print(f"{a.model}: {len(problems)} unsupported operator(s), attribute(s) or type(s){where}:")
        for pr in problems:
            print(f"  {pr}")
        return 1
    print(f"{a.model}: every operator is supported{where}")
    return 0


def cmd_run(a) -> int:
    import numpy as np
    from .build.fs import atomic_write
    from .errors import InvalidInputError
    from .session import InferenceSession
    feeds = {}
    for item in a.input:
        if "=" not in item:
            raise InvalidInputError(f"--input '{item}': expected NAME=FILE.npy")
        name, path = item.split("=", 1)
        try:
            feeds[name] = np.load(path, allow_pickle=False)
        except Exception as e:
            raise InvalidInputError(f"--input {name}: cannot read '{path}' as .npy ({e})") from None
    sess = InferenceSession(a.model, weights=a.weights, input_shapes=a.input_shape)
    outs = sess.run(None, feeds)
    names = [o.name for o in sess.get_outputs()]
    for n, v in zip(names, outs):
        print(_summary(n, v))
    if a.output:
        buf = io.BytesIO()
        np.savez(buf, **dict(zip(names, outs)))
        atomic_write(a.output, buf.getvalue())
        print(f"wrote {a.output}")
    return 0


def _summary(name: str, v) -> str:
    """One line per output: name, dtype, shape, the first values and (for numbers) the range."""
    import numpy as np
    flat = v.reshape(-1)
    first = np.array2string(flat[:5], precision=6, separator=", ", max_line_width=10 ** 6)
    if flat.size > 5:
        first = first[:-1] + ", ...]"
    line = f"{name}: {v.dtype} {list(v.shape)} {first}"
    if flat.size > 1 and (np.issubdtype(v.dtype, np.number) and not np.issubdtype(v.dtype, np.complexfloating)):
        with np.errstate(all="ignore"):
            line += f" min {flat.min():.6g} max {flat.max():.6g} mean {flat.astype(np.float64).mean():.6g}"
    return line


def cmd_config(a) -> int:
    from .build.blas import find_blas
    blas = find_blas()
    parts = []
    if a.cflags:  # the include directory holds pysofie/SofieFunctor.hxx (RDataFrame)
        from .root import include_dir
        # -pthread: the Session's thread pool (std::thread)
        parts += ["-std=c++17", "-pthread", *blas.cflags, f"-I{include_dir()}"]
    if a.libs:
        parts += ["-pthread", *blas.libs]
    if a.root:
        from .backends.cpp.root_weights import root_build_flags
        root_cflags, root_libs = root_build_flags()
        parts += (list(root_cflags) if a.cflags else []) + (list(root_libs) if a.libs else [])
    if a.blas:
        print(blas.describe())
    if parts:
        print(" ".join(parts))
    if not (a.cflags or a.libs or a.blas):
        print("pysofie config: give --cflags and/or --libs", file=sys.stderr)
        return 2
    return 0


def _log_to_stderr(args) -> None:
    """Progress (a compile longer than a second announces itself) and, with -v, every step with its timing."""
    import logging
    log = logging.getLogger("pysofie")
    for h in [h for h in log.handlers if getattr(h, "_pysofie_cli", False)]:  # main() called again in-process
        log.removeHandler(h)
    if args.quiet:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("pysofie: %(message)s"))
    handler._pysofie_cli = True
    log.addHandler(handler)
    log.setLevel(logging.DEBUG if args.verbose else logging.INFO)


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    _log_to_stderr(args)
    from .errors import PysofieError
    cmds = {"emit": cmd_emit, "check": cmd_check, "run": cmd_run, "config": cmd_config}
    try:
        return cmds[args.command](args)
    except PysofieError as e:
        print(f"pysofie {args.command}: error: {e}", file=sys.stderr)
        return 2
    except (OSError, ValueError, TypeError, RuntimeError) as e:
        print(f"pysofie {args.command}: error: {type(e).__name__}: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())


