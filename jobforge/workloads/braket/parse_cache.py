"""Parse each OpenQASM program *shape* once: new angles reuse the parse.

Variational algorithms submit the same circuit over and over with new
parameter values. The default simulator parses every program with the ANTLR
Python runtime, which is most of a small simulation's time (about 25 of 30 ms
for 10 qubits and 60 gates) and which no faster parser of the same grammar
replaces. So the programs are cached by their text with every float literal
replaced by a placeholder: the placeholder program is parsed once (by the
simulator's own parser), and each program of that shape gets a copy of that
tree with its own float values put back. Only a shape whose float literals all
map one-to-one onto ``FloatLiteral`` nodes at the same line and column (not in
a pragma, a comment or an imaginary literal) is cached; any other program is
parsed as before.
"""

from __future__ import annotations

import bisect
import functools
import pickle
import re
import threading
from collections import OrderedDict
from dataclasses import fields

from braket.default_simulator.openqasm import interpreter
from braket.default_simulator.openqasm.parser import openqasm_ast as ast
from braket.default_simulator.openqasm.parser.openqasm_parser import parse

PLACEHOLDER = "1.0"
MAX_SHAPES = 256
MAX_BYTES = 32 << 20  # pickled trees and shape texts together, per simulator process
# A float literal; with its minus sign where that can only be a unary minus on the literal alone (after an
# opening bracket, a comma, "=" or an operator, and before a closing bracket, a comma or ";"), so that a
# sign change keeps the shape: the tree then holds FloatLiteral(-v) where the parser has -(FloatLiteral(v)).
_FLOAT = re.compile(r"(?:(?<=[-(\[,=+*/%^<>!&|~{])\s*-(?=[\d.][\w.+-]*\s*[),;\]]))?"
                    r"(?<![\w.])(?:\d+\.\d*(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?|\d+[eE][+-]?\d+)(?![\w.])")
_VERSION = re.compile(r"OPENQASM\s+[0-9.]+\s*;")
_UNCACHEABLE = object()


class ShapeCache:
    def __init__(self, parser=parse, size: int = MAX_SHAPES, max_bytes: int = MAX_BYTES):
        self.parser = parser
        self.size = size
        self.max_bytes = max_bytes
        self._shapes: OrderedDict[str, object] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def parse(self, source: str) -> ast.Program:
        literals = _literals(source)
        if not literals:
            return self.parser(source)
        values = [match.group() for match in literals]
        shape = _shape(source, literals)
        with self._lock:
            entry = self._shapes.get(shape)
            if entry is not None:
                self._shapes.move_to_end(shape)
        if entry is None:
            entry = self._learn(shape)
            with self._lock:
                if shape not in self._shapes:
                    self._shapes[shape] = entry
                    self._bytes += _footprint(shape, entry)
                while len(self._shapes) > self.size or self._bytes > self.max_bytes:
                    self._bytes -= _footprint(*self._shapes.popitem(last=False))
        if entry is _UNCACHEABLE:
            return self.parser(source)
        pickled, paths = entry
        tree = pickle.loads(pickled)  # the interpreter rewrites the tree it visits: each run gets its own
        for path, index in paths:
            _follow(tree, path).value = float(values[index])
        return tree

    def _learn(self, shape: str):
        """(pickled tree, [(path to a FloatLiteral, index of its literal in the text)]), or _UNCACHEABLE."""
        try:
            tree = self.parser(shape)
        except Exception:  # e.g. a minus taken as unary that was not: let the parser speak on the real text
            return _UNCACHEABLE
        line_starts = [0] + [match.end() for match in re.finditer("\n", shape)]
        positions = {}
        for index, match in enumerate(_literals(shape)):
            line = _line_of(line_starts, match.start())
            positions[(line + 1, match.start() - line_starts[line])] = index
        paths = []
        for path, node in _float_literals(tree, ()):
            span = node.span
            index = positions.pop((span.start_line, span.start_column), None) if span else None
            if index is None:
                return _UNCACHEABLE
            paths.append((path, index))
        if positions:  # a float in the text that the tree does not hold as a FloatLiteral
            return _UNCACHEABLE
        return pickle.dumps(tree, protocol=pickle.HIGHEST_PROTOCOL), paths


def _footprint(shape: str, entry) -> int:
    return len(shape) + (0 if entry is _UNCACHEABLE else len(entry[0]))


def _literals(text: str) -> list[re.Match]:
    """The float literals of a program's text, less the version of its ``OPENQASM 3.0;`` header."""
    header = _VERSION.search(text)
    skip = header.span() if header else (0, 0)
    return [match for match in _FLOAT.finditer(text) if not skip[0] <= match.start() < skip[1]]


def _shape(text: str, literals: list[re.Match]) -> str:
    pieces, end = [], 0
    for match in literals:
        pieces += [text[end:match.start()], PLACEHOLDER]
        end = match.end()
    return "".join(pieces) + text[end:]


def _line_of(line_starts: list[int], offset: int) -> int:
    return bisect.bisect_right(line_starts, offset) - 1


def _float_literals(node, path: tuple):
    if isinstance(node, ast.FloatLiteral):
        yield path, node
    elif isinstance(node, list):
        for index, item in enumerate(node):
            yield from _float_literals(item, path + (index,))
    elif isinstance(node, ast.QASMNode):
        for field in fields(node):
            if field.name != "span":
                yield from _float_literals(getattr(node, field.name), path + (field.name,))


def _follow(node, path: tuple):
    for step in path:
        node = node[step] if isinstance(step, int) else getattr(node, step)
    return node


@functools.cache
def install() -> ShapeCache:
    """Route the default simulator's parse through one process-wide shape cache."""
    cache = ShapeCache(interpreter.parse)
    interpreter.parse = cache.parse
    return cache
