"""Evaluating a model over columnar data: numpy structured arrays, dicts of arrays, pandas frames, awkward arrays,
uproot trees, and (lazily, partition by partition) dask arrays, dask dataframes and uproot.dask.

The model takes its features from named columns: ``columns=["pt", "eta", ...]`` become the model's input of shape
[N, len(columns)] (one row per event, in that order), or ``columns={"input name": [...], ...}`` for a model with
several inputs. Nothing here imports pandas, awkward, uproot or dask unless the data is one of theirs.

For dask collections the session travels pickled (see session_state.py) and each worker process builds it once,
through pysofie's cache, however many partitions it evaluates.
"""
from __future__ import annotations

import hashlib
import pickle
import threading
from typing import Optional, Sequence, Union

import numpy as np

from .errors import InvalidInputError

Columns = Union[None, Sequence[str], dict]


def _session(model, session_options):
    from .session import InferenceSession
    if isinstance(model, InferenceSession):
        if session_options:
            raise TypeError("session options are given with the model, not with an InferenceSession")
        return model
    return InferenceSession(model, **session_options)


def _kind(data) -> str:
    mod = type(data).__module__.split(".")[0]
    if mod == "dask":
        import dask.array as da
        if isinstance(data, da.Array):
            return "dask.array"
        return "dask.dataframe"
    if mod == "dask_awkward":
        return "dask_awkward"
    if isinstance(data, dict) and any(type(v).__module__.split(".")[0] == "dask" for v in data.values()):
        return "dask.dict"  # uproot.dask(..., library="np")
    if mod == "pandas":
        return "pandas"
    if mod == "awkward":
        return "awkward"
    if mod == "uproot":
        return "uproot"
    if isinstance(data, np.ndarray):
        return "structured" if data.dtype.names else "ndarray"
    if isinstance(data, dict):
        return "dict"
    raise InvalidInputError(f"cannot evaluate a model over an object of type {type(data).__module__}."
                            f"{type(data).__name__} (expected a numpy array, a dict of arrays, a pandas or dask "
                            "dataframe, an awkward array, an uproot tree or a dask array)")


def _all_columns(data, kind: str) -> list[str]:
    if kind == "structured":
        return list(data.dtype.names)
    if kind in ("pandas", "dask.dataframe"):
        return [str(c) for c in data.columns]
    if kind == "awkward":
        return list(data.fields)
    if kind in ("dict", "dask.dict"):
        return list(data)
    raise InvalidInputError("columns=[...] is needed to evaluate a model over an uproot tree")


def _input_groups(sess, columns, data, kind) -> list[tuple[str, list[str]]]:
    """[(input name, its columns)] for every model input."""
    inputs = sess.get_inputs()
    if isinstance(columns, dict):
        names = [i.name for i in inputs]
        unknown = [k for k in columns if k not in names]
        missing = [n for n in names if n not in columns]
        if unknown or missing:
            raise InvalidInputError(f"columns: unknown input(s) {unknown}, missing input(s) {missing} "
                                    f"(the model's inputs: {names})")
        return [(n, list(columns[n])) for n in names]
    if len(inputs) != 1:
        raise InvalidInputError(f"the model has {len(inputs)} inputs: give columns={{input name: [columns]}}")
    cols = list(columns) if columns is not None else _all_columns(data, kind)
    return [(inputs[0].name, cols)]


def _check_widths(sess, groups) -> None:
    shapes = {i.name: i.shape for i in sess.get_inputs()}
    for name, cols in groups:
        shape = shapes[name]
        if len(shape) != 2 or (isinstance(shape[1], int) and shape[1] != len(cols)):
            raise InvalidInputError(f"input '{name}' has shape {shape}: columns fill an input of shape "
                                    f"[events, {len(cols)}] ({len(cols)} columns given: {cols})")


def _dtype_of(sess, name):
    for i in sess.get_inputs():
        if i.name == name:
            return {"tensor(float)": np.float32, "tensor(double)": np.float64, "tensor(int64)": np.int64,
                    "tensor(int32)": np.int32}.get(i.type, np.float32)
    return np.float32


def _stack(get, cols, dtype) -> np.ndarray:
    """[N, len(cols)] array of the columns (each converted to the input's dtype). Every column that cannot be
    taken is named in one error."""
    arrays, problems = [], []
    for c in cols:
        try:
            a = np.asarray(get(c))
        except KeyError:
            problems.append(f"'{c}' is not in the data")
            continue
        except (ValueError, IndexError, TypeError) as e:  # e.g. an awkward column with a list per event
            problems.append(f"'{c}' cannot be read as one value per event ({type(e).__name__}: {e})")
            continue
        if a.ndim != 1:
            problems.append(f"'{c}' has shape {list(a.shape)}: only scalar columns (one value per event) are taken")
            continue
        if a.dtype.kind == "O":  # Python objects: numbers are taken (pandas' object columns), anything else not
            try:
                a = a.astype(dtype)
            except (ValueError, TypeError) as e:
                problems.append(f"'{c}' holds objects that are not numbers ({e})")
                continue
        elif a.dtype.kind not in "biuf":
            problems.append(f"'{c}' holds {a.dtype} values, not numbers")
            continue
        arrays.append(a)
    if problems:
        raise InvalidInputError("column " + "; column ".join(problems))
    n = {len(a) for a in arrays}
    if len(n) > 1:
        raise InvalidInputError(f"columns {cols} have different lengths {sorted(n)}")
    out = np.empty((arrays[0].shape[0] if arrays else 0, len(cols)), dtype)
    for k, a in enumerate(arrays):
        out[:, k] = a
    return out


def _by_name(names, fetch):
    """fetch(column), with a KeyError for a name that is not among `names` (as a dict lookup gives: what _stack
    reports as missing, rather than each container's own error for it)."""
    names = set(names)

    def get(c):
        if c not in names:
            raise KeyError(c)
        return fetch(c)
    return get


def _feeds(sess, data, kind, groups) -> dict:
    if kind == "ndarray":
        (name, _), = groups
        return {name: np.ascontiguousarray(data, _dtype_of(sess, name))}
    if kind == "uproot":
        wanted = sorted({c for _, cols in groups for c in cols})
        try:
            arrays = data.arrays(wanted, library="np")
        except Exception as e:
            raise InvalidInputError(f"uproot tree '{getattr(data, 'name', '?')}': cannot read columns {wanted} "
                                    f"({type(e).__name__}: {e})") from None
        get = arrays.__getitem__
    elif kind == "awkward":
        import awkward as ak
        get = _by_name(data.fields, lambda c: ak.to_numpy(data[c]))
    elif kind == "pandas":
        get = lambda c: data[c].to_numpy()  # noqa: E731
    else:  # structured arrays and dicts
        get = _by_name(data.dtype.names if kind == "structured" else data, data.__getitem__)
    return {name: _stack(get, cols, _dtype_of(sess, name)) for name, cols in groups}


def _select(sess, outs: list, output):
    names = [o.name for o in sess.get_outputs()]
    if output is None:
        return outs[0] if len(outs) == 1 else dict(zip(names, outs))
    if isinstance(output, int):
        return outs[output]
    if output not in names:
        raise InvalidInputError(f"the model has no output '{output}' (outputs: {names})")
    return outs[names.index(output)]


def _run(sess, feeds: dict, chunk_size: Optional[int]) -> list:
    n = next(iter(feeds.values())).shape[0] if feeds else 0
    if not chunk_size or n <= chunk_size:
        return sess.run(None, feeds)
    parts = [sess.run(None, {k: v[i:i + chunk_size] for k, v in feeds.items()}) for i in range(0, n, chunk_size)]
    return [np.concatenate([p[k] for p in parts]) for k in range(len(parts[0]))]


def evaluate(model, data, columns: Columns = None, *, output=None, chunk_size: Optional[int] = None,
             **session_options):
    """The model's outputs over every event (row) of `data`.

    model: an InferenceSession, or anything InferenceSession takes (then session_options go to it).
    data: numpy structured array, plain 2-D array (the input itself), dict of 1-D arrays, pandas.DataFrame,
        awkward record array, uproot TTree, or lazily: dask.array (2-D), dask.dataframe, the dict of dask arrays
        of ``uproot.dask(..., library="np")``.
    columns: the input's columns in order (default: all, in the data's order), or {input name: [columns]}.
    output: an output name or index; default the only output, or {name: array} for several.
    chunk_size: evaluate this many events per call (bounds the memory of the model's buffers).

    Returns numpy arrays, or for dask data a dask.array (or a dict of them) to compute.
    """
    sess = _session(model, session_options)
    kind = _kind(data)
    if kind == "dask_awkward":
        raise InvalidInputError("dask-awkward arrays: use uproot.dask(..., library='np') (a dict of dask arrays) "
                                "or map pysofie.columnar.evaluate over the partitions yourself")
    if kind.startswith("dask"):
        return _evaluate_dask(sess, data, kind, columns, output, chunk_size)
    groups = _input_groups(sess, columns, data, kind) if kind != "ndarray" else [(sess.get_inputs()[0].name, [])]
    if kind != "ndarray":
        _check_widths(sess, groups)
    return _select(sess, _run(sess, _feeds(sess, data, kind, groups), chunk_size), output)


# -- dask -----------------------------------------------------------------------------------------------------------
_worker_sessions: dict[str, object] = {}
_worker_lock = threading.Lock()


class SessionRef:
    """A pickled session that unpickles once per process: every task of a dask graph that carries it shares one
    InferenceSession per worker process (built through the cache), found again by the hash of its state."""

    def __init__(self, sess):
        self.state = pickle.dumps(sess, protocol=pickle.HIGHEST_PROTOCOL)
        self.key = hashlib.sha256(self.state).hexdigest()
        _worker_sessions.setdefault(self.key, sess)

    def __reduce__(self):
        return (_ref_from_state, (self.key, self.state))

    def __dask_tokenize__(self):
        return self.key

    def get(self):
        s = _worker_sessions.get(self.key)
        if s is None:
            with _worker_lock:
                s = _worker_sessions.get(self.key)
                if s is None:
                    s = _worker_sessions[self.key] = pickle.loads(self.state)
        return s


def _ref_from_state(key: str, state: bytes) -> SessionRef:
    ref = SessionRef.__new__(SessionRef)
    ref.key, ref.state = key, state
    return ref


def _eval_block(block, ref: SessionRef, groups, output, chunk_size, kind):
    sess = ref.get()
    if kind == "dask.array":
        (name, _), = groups
        feeds = {name: np.ascontiguousarray(block, _dtype_of(sess, name))}
    else:
        sub = "pandas" if kind == "dask.dataframe" else "dict"
        feeds = _feeds(sess, block, sub, groups)
    out = _select(sess, _run(sess, feeds, chunk_size), output)
    if isinstance(out, dict):
        raise InvalidInputError("a model with several outputs over dask data: choose one with output=")
    return out


def _evaluate_dask(sess, data, kind, columns, output, chunk_size):
    import dask.array as da
    outs = sess.get_outputs()
    if output is None and len(outs) > 1:
        return {o.name: _evaluate_dask(sess, data, kind, columns, o.name, chunk_size) for o in outs}
    out_arg = output if output is not None else 0
    spec = outs[out_arg] if isinstance(out_arg, int) else next((o for o in outs if o.name == out_arg), None)
    if spec is None:
        raise InvalidInputError(f"the model has no output '{output}' (outputs: {[o.name for o in outs]})")
    dtype = {"tensor(float)": np.float32, "tensor(double)": np.float64, "tensor(int64)": np.int64}.get(spec.type,
                                                                                                   np.float32)
    tail = tuple(d for d in spec.shape[1:])
    if not all(isinstance(d, int) for d in tail):
        raise InvalidInputError(f"output '{spec.name}' has shape {spec.shape}: over dask data only outputs whose "
                                "dims after the first are fixed are supported")
    ref = SessionRef(sess)
    if kind == "dask.array":
        if data.ndim != 2:
            raise InvalidInputError(f"a dask array of events must be 2-D [events, features], got {data.ndim}-D")
        groups = [(sess.get_inputs()[0].name, [])]
        if len(sess.get_inputs()) != 1:
            raise InvalidInputError("a dask array feeds a model with one input")
        if data.numblocks[1] != 1:
            data = data.rechunk({1: -1})
        chunks = (data.chunks[0],) + tuple((d,) for d in tail)
        new_axis = list(range(2, 1 + len(tail))) if len(tail) > 1 else None
        drop = [1] if not tail else None
        return data.map_blocks(_eval_block, ref, groups, out_arg, chunk_size, kind, dtype=dtype, chunks=chunks,
                               drop_axis=drop, new_axis=new_axis, meta=np.empty((0,) * (1 + len(tail)), dtype))
    groups = _input_groups(sess, columns, data, kind)
    _check_widths(sess, groups)
    if kind == "dask.dataframe":
        wanted = list(dict.fromkeys(c for _, cols in groups for c in cols))
        return data[wanted].map_partitions(_eval_block, ref, groups, out_arg, chunk_size, kind,
                                           meta=np.empty((0,) + tail, dtype))
    # a dict of 1-D dask arrays with the same chunks along events (uproot.dask(..., library="np"))
    wanted = list(dict.fromkeys(c for _, cols in groups for c in cols))
    missing = [c for c in wanted if c not in data]
    if missing:
        raise InvalidInputError(f"column(s) {missing} not found (columns: {list(data)})")
    arrays = [data[c] for c in wanted]
    chunks = (arrays[0].chunks[0],) + tuple((d,) for d in tail)

    def block(*cols):
        return _eval_block(dict(zip(wanted, cols)), ref, groups, out_arg, chunk_size, "dask.dict")

    return da.map_blocks(block, *arrays, dtype=dtype, chunks=chunks, new_axis=list(range(1, 1 + len(tail))) or None,
                         meta=np.empty((0,) * (1 + len(tail)), dtype))
