"""Pickling an InferenceSession: what crosses the wire is the model (its optimized IR, weights included), the
options it was built with and the hash of its generated code; unpickling regenerates the code, checks the hash and
gets the compiled library through the cache (compiling only where the cache does not have it), so a session ships
to Dask workers or other processes. A weight file given by the user travels as its bytes."""
from __future__ import annotations

import hashlib
import os
import pickle

from .errors import PysofieError

STATE_VERSION = 1


def code_hash(header: str) -> str:
    return hashlib.sha256(header.encode()).hexdigest()


def session_state(sess) -> dict:
    gm = sess._gm
    try:
        graph = pickle.dumps(sess._graph, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as e:
        raise PysofieError(f"model '{gm.name}': its IR cannot be pickled ({type(e).__name__}: {e})") from None
    state = {
        "version": STATE_VERSION,
        "graph": graph,
        "options": dict(sess._build_options, name=gm.name, namespace=gm.namespace, weights=gm.weights_mode),
        "code_hash": code_hash(gm.header),
        "weight_file": None,
    }
    user_file = sess._build_options.get("weight_file")
    if user_file:
        with open(user_file, "rb") as f:
            state["weight_file"] = (os.path.basename(user_file), f.read())
    return state


def restore_session(sess, state: dict) -> None:
    """Re-initializes `sess` (a bare InferenceSession from pickle) from a state of session_state()."""
    from .api import generate_code
    from .build.fs import atomic_write, cache_dir
    if not isinstance(state, dict) or state.get("version") != STATE_VERSION:
        raise PysofieError("cannot unpickle this InferenceSession: it was pickled by an incompatible pysofie version")
    graph = pickle.loads(state["graph"])
    opts = dict(state["options"])
    gm = generate_code(graph, name=opts["name"], namespace=opts["namespace"], weights=opts["weights"])
    if code_hash(gm.header) != state["code_hash"]:
        raise PysofieError(f"model '{gm.name}': the code generated here differs from the pickled session's "
                           "(is this the same pysofie version as where it was pickled?)")
    if state["weight_file"] is not None:
        base, data = state["weight_file"]
        key = hashlib.sha256(data).hexdigest()
        path = os.path.join(cache_dir(), "weights", key[:2], f"{key}{os.path.splitext(base)[1]}")
        if not os.path.exists(path):
            atomic_write(path, data)
        opts["weight_file"] = path
    sess.__init__(None, _generated=gm, **{k: v for k, v in opts.items() if k not in ("name", "namespace")})
