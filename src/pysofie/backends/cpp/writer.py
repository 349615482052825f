"""An indentation-aware C++ source writer: code is emitted through scopes, never hand-indented strings."""
from __future__ import annotations

import contextlib


class CodeWriter:
    def __init__(self, indent: str = "   "):
        self._lines: list[str] = []
        self._level = 0
        self._indent = indent

    def line(self, text: str = "") -> "CodeWriter":
        for part in text.split("\n"):
            self._lines.append((self._indent * self._level + part) if part else "")
        return self

    def lines(self, texts) -> "CodeWriter":
        for t in texts:
            self.line(t)
        return self

    @contextlib.contextmanager
    def block(self, header: str, close: str = "}"):
        self.line(header + " {")
        self._level += 1
        try:
            yield self
        finally:
            self._level -= 1
            self.line(close)

    @contextlib.contextmanager
    def indented(self):
        self._level += 1
        try:
            yield self
        finally:
            self._level -= 1

    def open(self, header: str) -> None:
        """Start a block that a later close() ends (for nests built in a loop)."""
        self.line(header + " {")
        self._level += 1

    def close(self, text: str = "}") -> None:
        self._level -= 1
        self.line(text)

    def loop(self, var: str, count: str, start: str = "0"):
        """for (size_t var = start; var < count; ++var) { ... }"""
        if str(count).strip() == "0":  # a zero-size axis: no iteration (and no 'unsigned < 0' warning)
            return self.block(f"for (size_t {var} = {start}, {var}_end = 0; {var} < {var}_end; ++{var})")
        return self.block(f"for (size_t {var} = {start}; {var} < {count}; ++{var})")

    def text(self) -> str:
        return "\n".join(self._lines) + "\n"
