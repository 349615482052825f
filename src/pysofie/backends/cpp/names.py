"""Identifiers for generated code. A model's names never reach the C++ text without going through here."""
from __future__ import annotations

import hashlib
import re

CPP_KEYWORDS = set("""alignas alignof and and_eq asm auto bitand bitor bool break case catch char char8_t char16_t
char32_t class compl concept const consteval constexpr constinit const_cast continue co_await co_return co_yield
decltype default delete do double dynamic_cast else enum explicit export extern false float for friend goto if
inline int long mutable namespace new noexcept not not_eq nullptr operator or or_eq private protected public
register reinterpret_cast requires return short signed sizeof static static_assert static_cast struct switch
template this thread_local throw true try typedef typeid typename union unsigned using virtual void volatile
wchar_t while xor xor_eq main std size_t NULL""".split())


def sanitize(raw: str, prefix: str = "") -> str:
    s = re.sub(r"[^A-Za-z0-9_]", "_", raw)
    s = re.sub(r"__+", "_", s)  # double underscores are reserved in C++
    s = s.strip("_") or "x"
    if s[0].isdigit():
        s = "_" + s if prefix else "n" + s
    s = prefix + s
    if s in CPP_KEYWORDS:
        s += "_"
    return s


# Object-like macros of the C and C++ standard headers that are not all capitals (those are avoided wholesale).
_LOWER_MACROS = {"errno", "stdin", "stdout", "stderr", "math_errhandling", "assert", "offsetof", "setjmp",
                 "va_arg", "va_start", "va_end", "va_copy", "major", "minor", "makedev", "unix", "linux", "i386"}


def macro_like(name: str) -> bool:
    """A name that a system header may define as a macro (NAN, EOF, INFINITY, errno...)."""
    return name in _LOWER_MACROS or (len(name) > 1 and not any(c.islower() for c in name)) or name.startswith("_")


def short_identifier(name: str, limit: int = 64) -> str:
    """`name` if at most `limit` characters, else a prefix of it and a hash of the whole (file names derive from it)."""
    if len(name) <= limit:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:12]
    return f"{name[:limit - 13].rstrip('_')}_{digest}"


class NameTable:
    """Hands out unique sanitized identifiers."""

    def __init__(self, reserved=()):
        self._used: set[str] = set(reserved) | CPP_KEYWORDS

    def unique(self, raw: str, prefix: str = "") -> str:
        base = sanitize(raw, prefix)
        name, k = base, 1
        while name in self._used:
            name = f"{base}_{k}"
            k += 1
        self._used.add(name)
        return name

    def reserve(self, name: str) -> None:
        self._used.add(name)


def c_string(s: str) -> str:
    """A C++ string literal for arbitrary text (for comments and messages)."""
    out = []
    for ch in s:
        if ch in '"\\':
            out.append("\\" + ch)
        elif 32 <= ord(ch) < 127:
            out.append(ch)
        else:
            out.append("?")
    return '"' + "".join(out) + '"'


def comment_text(s: str) -> str:
    """Text safe inside a // comment (no line breaks, no trigraph or backslash line continuation)."""
    return re.sub(r"[^ -~]", "?", s).replace("\\", "/").replace("??", "?_")
