"""The system C++ compiler: discovery, flags, and compiling a shared library into the cache."""
from __future__ import annotations

import functools
import os
import shutil
import subprocess
import tempfile

from ..errors import CompileError, GeneratedCodeError
from .fs import apply_umask


def find_cxx() -> str:
    """$CXX when set (an error if it names no executable: never another compiler in its place), else the first
    of c++, g++, clang++ on PATH."""
    env = os.environ.get("CXX", "").strip()
    if env:
        exe = env.split()[0]
        if not shutil.which(exe):
            raise CompileError(f"CXX is set to '{env}', but '{exe}' is not an executable (not found on PATH); "
                               "fix CXX or unset it to use c++/g++/clang++")
        return env
    for cand in ("c++", "g++", "clang++"):
        if shutil.which(cand):
            return cand
    raise CompileError("no C++ compiler found: install g++ or clang++, or set CXX")


@functools.lru_cache(maxsize=None)
def compiler_info(cxx: str) -> str:
    try:
        out = subprocess.run(cxx.split() + ["--version"], capture_output=True, text=True, timeout=60)
        return (out.stdout or out.stderr).splitlines()[0]
    except Exception as e:
        raise CompileError(f"C++ compiler '{cxx}' does not run: {e}") from None


@functools.lru_cache(maxsize=None)
def _accepts(cxx: str, flag: str) -> bool:
    """Whether the compiler builds a trivial program with this flag (-march=native; x86-only options)."""
    with tempfile.TemporaryDirectory() as d:
        src = os.path.join(d, "t.cpp")
        with open(src, "w") as f:
            f.write("int main() { return 0; }\n")
        r = subprocess.run(cxx.split() + [flag, src, "-o", os.path.join(d, "t")], capture_output=True)
        return r.returncode == 0


def opt_flags(level: str | int | None = None, native: bool | None = None) -> list[str]:
    """Optimization flags. PYSOFIE_OPT (0..3) overrides the default level 3; -march=native when supported
    (PYSOFIE_NATIVE=0 gives portable code)."""
    lvl = str(level if level is not None else os.environ.get("PYSOFIE_OPT", "3"))
    flags = [f"-O{lvl}"]
    if native is None:
        native = os.environ.get("PYSOFIE_NATIVE", "1") != "0"
    if native and _accepts(find_cxx(), "-march=native"):
        # Loops the compiler vectorizes itself stay 256 bits wide: with GCC 12 on an AVX-512 AMD EPYC (Zen 4,
        # which runs 512-bit operations as two halves) 512-bit loops made DDB_B1 25-30 % slower; pysofie's own
        # kernels choose their width with intrinsics, and this is already the default tuning on Intel CPUs.
        flags.append("-march=native")
        if _accepts(find_cxx(), "-mprefer-vector-width=256"):  # an x86 option
            flags.append("-mprefer-vector-width=256")
    if lvl in ("2", "3"):
        flags.append("-fno-math-errno")
    return flags


def target_isa(extra_flags=()) -> str:
    """The instruction set pysofie's kernels are built for with its flags plus `extra_flags`, from the compiler's
    predefined macros (as the kernels' #if choose): avx512, avx2 (with FMA), or scalar."""
    r = subprocess.run(find_cxx().split() + opt_flags() + list(extra_flags) + ["-dM", "-E", "-x", "c++", os.devnull],
                       capture_output=True, text=True, check=True)
    macros = {line.split()[1] for line in r.stdout.splitlines() if line.startswith("#define ")}
    if {"__AVX512F__", "__AVX2__", "__FMA__"} <= macros:
        return "avx512"
    return "avx2" if {"__AVX2__", "__FMA__"} <= macros else "scalar"


def compile_shared(sources: list[str], output: str, flags: list[str], libs: list[str], cwd: str,
                   user_code: bool = False) -> None:
    """Compile C++ sources into a shared library; the library appears atomically at `output`. user_code: the
    sources hold C++ written by the user (custom operators), so an error may be theirs."""
    cxx = find_cxx()
    os.makedirs(os.path.dirname(output), exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(output), prefix=".tmp-", suffix=".so")
    os.close(fd)
    cmd = cxx.split() + ["-std=c++17", "-shared", "-fPIC", *flags, *sources, "-o", tmp, *libs]
    try:
        r = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
        if r.returncode != 0:
            msg = (r.stderr or r.stdout).strip()
            lines = msg.splitlines()
            if len(lines) > 40:
                msg = "\n".join(lines[:40]) + f"\n... ({len(lines) - 40} more lines)"
            if user_code:
                raise CompileError(f"compiling {', '.join(os.path.basename(s) for s in sources)} failed (the code "
                                   f"includes custom operators' C++; sources kept in {cwd}):\n$ {' '.join(cmd)}\n{msg}")
            # the model was validated before code was generated: code the compiler rejects is pysofie's fault
            raise GeneratedCodeError(
                f"this is a bug in pysofie, not in your model: the C++ compiler rejected the code pysofie generated. "
                f"Please report it with the generated sources, kept in {cwd}.\n$ {' '.join(cmd)}\n{msg}")
        apply_umask(tmp, executable=True)  # mkstemp made it 0600; the compiler's output mode is lost
        os.replace(tmp, output)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
