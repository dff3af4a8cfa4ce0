"""Lines of standard input as they arrive, for `chatbot reply`, a filter.

A filter answers each line as soon as it can: `waiting(n)` blocks for one line, then takes
only the lines already there (at most n), so a person typing or a program writing a line at a
time gets each answer at once, while a file or a fast pipe is still read in batches. Memory
stays bounded whatever the input's length: one read's bytes, and a line longer than the limit
is skipped as it streams past, never held whole.
"""

from __future__ import annotations

import os
import select
from dataclasses import dataclass

CHUNK = 1 << 16


@dataclass
class Line:
    number: int  # from 1
    raw: bytes | None  # None: longer than the limit


class LineReader:
    def __init__(self, stream, limit: int):
        """`stream`: binary; read through its file descriptor when it has one (standard input),
        else by its own reads (a stream in memory)."""
        self.stream, self.limit = stream, limit  # limit: the most bytes a line may have
        try:
            self.fd: int | None = stream.fileno()
        except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation is an OSError
            self.fd = None
        self.buffer = bytearray()
        self.number = 0
        self.eof = False
        self.skipping = False  # inside a line already found too long: drop bytes up to its end

    def waiting(self, most: int) -> list[Line]:
        """The next line (blocking until it comes), then those already readable, `most` in all;
        empty at the end of the input."""
        lines: list[Line] = []
        while len(lines) < most:
            line = self._next()
            if line is not None:
                lines.append(line)
                continue
            if self.eof or (lines and not self._readable()):
                break
            self._read()
        return lines

    def _next(self) -> Line | None:
        """A whole line from the buffer, if one is there (the last one may lack its newline)."""
        while True:
            end = self.buffer.find(b"\n")
            if self.skipping:
                if end < 0:
                    self.buffer.clear()
                    return None
                del self.buffer[: end + 1]
                self.skipping = False
                continue
            if end < 0 and len(self.buffer) > self.limit:
                self.buffer.clear()
                self.skipping = True
                return self._line(None)
            if end < 0:
                if self.eof and self.buffer:
                    raw = bytes(self.buffer)
                    self.buffer.clear()
                    return self._line(raw)
                return None
            raw = bytes(self.buffer[:end])
            del self.buffer[: end + 1]
            return self._line(raw if len(raw) <= self.limit else None)

    def _line(self, raw: bytes | None) -> Line:
        self.number += 1
        return Line(self.number, raw)

    def _readable(self) -> bool:
        if self.fd is None:
            return False
        try:
            return bool(select.select([self.fd], [], [], 0)[0])
        except (OSError, ValueError):  # no select on this kind of file: read on only when asked
            return False

    def _read(self) -> None:
        chunk = os.read(self.fd, CHUNK) if self.fd is not None else self.stream.read1(CHUNK)
        if chunk:
            self.buffer += chunk
        else:
            self.eof = True
