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
    sub = p.add_subparsers(dest="command", required=True)

    e = sub.add_parser("emit", help="write <name>.hxx and its weight file")
    e.add_argument("model", help="model file (.onnx, .h5, .keras, .pt)")
    e.add_argument("-o", "--output", required=True, help="output directory")
    e.add_argument("--name", help="model name (file names; namespace SOFIE_<name>)")
    e.add_argument("--namespace", help="C++ namespace (default SOFIE_<name>)")
    e.add_argument("--weights", choices=["dat", "bin", "embed"], default="dat",
                   help="weight storage: SOFIE text .dat (default), binary .bin, or embedded in the header")
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
    r.add_argument("--weights", choices=["dat", "bin", "embed"], default="dat")
    r.add_argument("--input-shape", action="append", type=_shape, metavar="D0,D1,...")

    g = sub.add_parser("config", help="compiler flags for emitted code (like pkg-config)")
    g.add_argument("--cflags", action="store_true", help="flags to compile emitted code")
    g.add_argument("--libs", action="store_true", help="flags to link it against the BLAS (with an rpath)")
    g.add_argument("--blas", action="store_true", help="describe the BLAS pysofie found")
    return p


def _version() -> str:
    from . import __version__
    return __version__


def cmd_emit(a) -> int:
    from .api import emit
    paths = emit(a.model, a.output, name=a.name, weights=a.weights, namespace=a.namespace,
                 input_shapes=a.input_shape, optimize=not a.no_optimize, target=a.target)
    print(f"wrote {paths['header']}" + (f" and {paths['weights']}" if paths["weights"] else "")
          + f" (namespace {paths['namespace']})")
    return 0


def cmd_check(a) -> int:
    from .api import check
    problems = check(a.model, input_shapes=a.input_shape, target=a.target)
    where = " for the CUDA target" if a.target == "cuda" else ""
    if problems:
        print(f"{a.model}: {len(problems)} unsupported operator(s){where}:")
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
        print(f"{n}: {v.dtype} {list(v.shape)}")
        with np.printoptions(threshold=20, edgeitems=3, precision=6):
            print(f"  {v}")
    if a.output:
        buf = io.BytesIO()
        np.savez(buf, **dict(zip(names, outs)))
        atomic_write(a.output, buf.getvalue())
        print(f"wrote {a.output}")
    return 0


def cmd_config(a) -> int:
    from .build.blas import find_blas
    blas = find_blas()
    parts = []
    if a.cflags:
        parts += ["-std=c++17", *blas.cflags]
    if a.libs:
        parts += list(blas.libs)
    if a.blas:
        print(blas.describe())
    if parts:
        print(" ".join(parts))
    if not (a.cflags or a.libs or a.blas):
        print("pysofie config: give --cflags and/or --libs", file=sys.stderr)
        return 2
    return 0


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
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


