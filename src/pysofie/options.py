"""SessionOptions and execution providers, as onnxruntime spells them, mapped onto what pysofie can honor.

What each option means here (the rest are kept, shown by get_session_options(), and have no effect):
- intra_op_num_threads: threads of the compiled Session (0 = pysofie's default).
- graph_optimization_level: ORT_DISABLE_ALL skips pysofie's graph optimizations (fusion, packing) and
  compiles at -O1; ORT_ENABLE_BASIC keeps them and compiles at -O2; the higher levels are the default.
- log_severity_level: 0 verbose .. 4 fatal, the level of the ``pysofie`` logger while the session is built.
- enable_profiling / profile_file_prefix: each run is timed; end_profiling() writes the events as a Chrome
  trace JSON file (as onnxruntime does) and returns its path.
"""
from __future__ import annotations

import collections.abc
import enum
import logging
import warnings

AVAILABLE_PROVIDERS = ("CPUExecutionProvider",)


class GraphOptimizationLevel(enum.IntEnum):
    ORT_DISABLE_ALL = 0
    ORT_ENABLE_BASIC = 1
    ORT_ENABLE_EXTENDED = 2
    ORT_ENABLE_LAYOUT = 3
    ORT_ENABLE_ALL = 99


class ExecutionMode(enum.IntEnum):
    ORT_SEQUENTIAL = 0
    ORT_PARALLEL = 1


class SessionOptions:
    """onnxruntime.SessionOptions' attributes with onnxruntime's defaults (see the module's docstring)."""

    def __init__(self):
        self.intra_op_num_threads = 0
        self.inter_op_num_threads = 0
        self.graph_optimization_level = GraphOptimizationLevel.ORT_ENABLE_ALL
        self.log_severity_level = -1
        self.log_verbosity_level = 0
        self.logid = ""
        self.enable_profiling = False
        self.profile_file_prefix = "onnxruntime_profile_"
        self.execution_mode = ExecutionMode.ORT_SEQUENTIAL
        self.optimized_model_filepath = ""
        self.enable_cpu_mem_arena = True
        self.enable_mem_pattern = True
        self.enable_mem_reuse = True
        self.use_deterministic_compute = False
        self.use_per_session_threads = True
        self._config: dict[str, str] = {}

    def add_session_config_entry(self, key: str, value: str) -> None:
        self._config[str(key)] = str(value)

    def get_session_config_entry(self, key: str) -> str:
        if key not in self._config:
            raise RuntimeError(f"SessionOptions does not have configuration with key: {key}")
        return self._config[key]

    def __repr__(self) -> str:
        return (f"SessionOptions(intra_op_num_threads={self.intra_op_num_threads}, graph_optimization_level="
                f"{GraphOptimizationLevel(int(self.graph_optimization_level)).name}, "
                f"log_severity_level={self.log_severity_level}, enable_profiling={self.enable_profiling})")

    @classmethod
    def from_any(cls, options) -> "SessionOptions":
        """A copy of pysofie's or onnxruntime's SessionOptions (read by attribute name), or the defaults."""
        new = cls()
        if options is None:
            return new
        for attr in list(vars(new)):
            if attr.startswith("_"):
                continue
            try:
                val = getattr(options, attr)
            except Exception:  # an attribute this version of onnxruntime lacks
                continue
            default = getattr(new, attr)
            if isinstance(default, enum.IntEnum):
                try:
                    val = type(default)(int(val))
                except ValueError:
                    raise ValueError(f"SessionOptions.{attr}: {val!r} is not a {type(default).__name__}") from None
            elif isinstance(default, bool):
                val = bool(val)
            elif isinstance(default, int):
                val = int(val)
            else:
                val = str(val)
            setattr(new, attr, val)
        if isinstance(options, SessionOptions):
            new._config = dict(options._config)
        if new.intra_op_num_threads < 0:
            raise ValueError(f"SessionOptions.intra_op_num_threads must be >= 0, got {new.intra_op_num_threads}")
        return new

    # -- what pysofie does with them -------------------------------------------------------------------
    def threads(self):
        """intra_op_num_threads for the compiled Session: None (pysofie's default) for 0."""
        return self.intra_op_num_threads or None

    def optimization(self) -> tuple[bool, str | None]:
        """(run the graph optimizations?, C++ optimization level or None for the default)."""
        lvl = int(self.graph_optimization_level)
        if lvl == GraphOptimizationLevel.ORT_DISABLE_ALL:
            return False, "1"
        if lvl == GraphOptimizationLevel.ORT_ENABLE_BASIC:
            return True, "2"
        return True, None

    def logging_level(self):
        """The ``pysofie`` logger's level while the session is built, or None to leave it alone."""
        sev = int(self.log_severity_level)
        if sev < 0:
            return None
        return [logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR, logging.CRITICAL][min(sev, 4)]


def normalize_providers(providers, provider_options=None) -> tuple[list[str], list[dict]]:
    """onnxruntime's rules for ``providers`` (names or (name, options) tuples) and ``provider_options``: the
    same ValueErrors for malformed arguments, the same warning for a provider that is not available here.
    Returns the providers that will run (always the CPU) and their options."""
    if providers is None:
        return ["CPUExecutionProvider"], [{}]
    if not isinstance(providers, collections.abc.Sequence) or isinstance(providers, str):
        raise ValueError("'providers' should be a sequence.")
    pairs: list[tuple[str, dict]] = []
    if provider_options is not None:
        if not isinstance(provider_options, collections.abc.Sequence):
            raise ValueError("'provider_options' should be a sequence.")
        if len(providers) != len(provider_options):
            raise ValueError("'providers' and 'provider_options' should be the same length if both are given.")
        if not all(isinstance(p, str) for p in providers):
            raise ValueError("Only string values for 'providers' are supported if 'provider_options' is given.")
        if not all(isinstance(o, dict) for o in provider_options):
            raise ValueError("'provider_options' values must be dicts.")
        pairs = list(zip(providers, provider_options))
    else:
        for p in providers:
            if isinstance(p, str):
                pairs.append((p, {}))
            elif isinstance(p, tuple) and len(p) == 2 and isinstance(p[0], str) and isinstance(p[1], dict):
                pairs.append(p)
            else:
                raise ValueError("'providers' values must be either strings or (string, dict) tuples.")
    seen: dict[str, dict] = {}
    for name, opts in pairs:
        if name not in AVAILABLE_PROVIDERS:
            warnings.warn(f"Specified provider '{name}' is not in available provider names. Available providers: "
                          f"'{', '.join(AVAILABLE_PROVIDERS)}' (pysofie runs on the CPU; falling back to it)",
                          UserWarning, stacklevel=3)
            continue
        if name in seen:
            warnings.warn(f"Duplicate provider '{name}' encountered, ignoring.", UserWarning, stacklevel=3)
            continue
        seen[name] = {str(k): str(v) for k, v in opts.items()}
    return ["CPUExecutionProvider"], [{}]


def get_available_providers() -> list[str]:
    return list(AVAILABLE_PROVIDERS)
