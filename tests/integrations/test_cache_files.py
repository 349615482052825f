"""The cache: every library has its own file name (its content hash), and files keep the user's umask."""
import os
import stat

import numpy as np
import pytest

import pysofie
from pysofie.build.fs import atomic_write, current_umask

from .models import features, mlp


def _mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def fresh_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PYSOFIE_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.mark.parametrize("mask", [0o022, 0o077])
def test_files_keep_the_umask(fresh_cache, tmp_path, mask):
    old = os.umask(mask)
    try:
        assert current_umask() == mask
        atomic_write(str(tmp_path / "plain.txt"), "x")
        assert _mode(tmp_path / "plain.txt") == 0o666 & ~mask
        paths = pysofie.emit(mlp(name=f"umask{mask}"), str(tmp_path / "out"))
        assert _mode(paths["header"]) == 0o666 & ~mask
        assert _mode(paths["weights"]) == 0o666 & ~mask
        sess = pysofie.InferenceSession(mlp(name=f"umask{mask}"))
        lib = sess._native.lib._name
        assert _mode(lib) == 0o777 & ~mask  # a shared library is executable, as the compiler makes it
        assert _mode(sess._weight_path) == 0o666 & ~mask
    finally:
        os.umask(old)


def test_every_library_has_its_own_file_name(fresh_cache):
    a = pysofie.InferenceSession(mlp(name="alpha", seed=1))
    b = pysofie.InferenceSession(mlp(name="beta", seed=2, hidden=8))
    la, lb = a._native.lib._name, b._native.lib._name
    assert os.path.basename(la) != os.path.basename(lb)
    # the name is the cache key (the directory), so no other content can ever be written under it
    for lib in (la, lb):
        assert os.path.basename(os.path.dirname(lib))[:32] in os.path.basename(lib)
    x = features(5)
    ya, yb = a.run(None, {"x": x})[0], b.run(None, {"x": x})[0]
    assert not np.array_equal(ya, yb)
    # the same code again: the same file, from the cache
    assert pysofie.InferenceSession(mlp(name="alpha", seed=1))._native.lib._name == la
    assert not [f for f in os.listdir(os.path.dirname(la)) if f.startswith(".tmp-")]
