"""The OpenQASM shape cache gives the simulator the very program the parser would."""

import numpy as np
import pytest


def layered(angles) -> str:
    lines = ["OPENQASM 3.0;", "bit[3] b;", "qubit[3] q;"]
    for qubit, angle in enumerate(angles):
        lines.append(f"rx({angle!r}) q[{qubit}];")
    lines += ["cnot q[0], q[1];", "rz(-2.5e-1 * pi) q[2];", "b = measure q;"]
    return "\n".join(lines)


def parsed(source: str):
    """The parser's own tree of a program."""
    from braket.default_simulator.openqasm.parser.openqasm_parser import parse

    return parse(source)


def without_spans(node):
    """A tree as comparable data: no spans, and -(FloatLiteral(v)) as FloatLiteral(-v), which the cache gives."""
    from braket.default_simulator.openqasm.parser import openqasm_ast as ast

    if (isinstance(node, ast.UnaryExpression) and node.op.name == "-"
            and isinstance(node.expression, ast.FloatLiteral)):
        return ("FloatLiteral", {"value": -node.expression.value})
    if isinstance(node, list):
        return [without_spans(item) for item in node]
    if isinstance(node, ast.QASMNode):
        return (type(node).__name__,
                {name: without_spans(value) for name, value in vars(node).items() if name != "span"})
    return node


class CountingParser:
    def __init__(self):
        self.calls = 0

    def __call__(self, source):
        self.calls += 1
        return parsed(source)


def test_new_angles_reuse_one_parse_and_give_the_parsers_tree():
    from jobforge.workloads.braket.parse_cache import ShapeCache

    parser = CountingParser()
    cache = ShapeCache(parser)
    rng = np.random.default_rng(3)
    for _ in range(5):
        source = layered(rng.uniform(-np.pi, np.pi, 3).tolist())
        assert without_spans(cache.parse(source)) == without_spans(parsed(source))
    assert parser.calls == 1  # the angles' signs are part of the values, not of the shape


@pytest.mark.parametrize("expression", ["2 - -1.5", "2 -1.5", "2**-1.5", "-1.5 ** 2", "(-1.5 + 2) * 3",
                                        "-2.5e-1 * pi", "1.5e3 - .5", "3. / -4.25e-2"])
def test_expressions_keep_their_value(expression):
    from jobforge.workloads.braket.parse_cache import ShapeCache

    source = f"OPENQASM 3.0;\nfloat[64] x = {expression};\nqubit[1] q;\nrx(x) q[0];\n"
    cache = ShapeCache()
    for _ in range(2):
        assert without_spans(cache.parse(source)) == without_spans(parsed(source))


def test_each_call_gets_its_own_tree():
    from jobforge.workloads.braket.parse_cache import ShapeCache

    cache = ShapeCache()
    source = layered([0.1, 0.2, 0.3])
    first = cache.parse(source)
    first.statements.clear()  # the interpreter rewrites what it visits
    assert len(cache.parse(source).statements) == len(parsed(source).statements)


@pytest.mark.parametrize("source", [
    # a float inside a pragma is not a FloatLiteral of the tree: parsed every time
    'OPENQASM 3.0;\nqubit[1] q;\nrx(0.5) q[0];\n#pragma braket result expectation z(q[0]) @ 0.5\n',
    # a comment that holds a float
    'OPENQASM 3.0;\nqubit[1] q;\n// 2.5\nrx(0.25) q[0];\n',
])
def test_shapes_with_floats_outside_float_literals_are_parsed_every_time(source):
    from jobforge.workloads.braket.parse_cache import ShapeCache

    parser = CountingParser()
    cache = ShapeCache(parser)
    for _ in range(2):
        tree = cache.parse(source)
    assert without_spans(tree) == without_spans(parsed(source))
    assert parser.calls == 3  # the shape once, then the program itself each time


def test_simulation_through_the_cache_matches_a_plain_parse():
    from braket.default_simulator import StateVectorSimulator
    from braket.ir.openqasm import Program

    from jobforge.workloads.braket.parse_cache import install

    program = Program(source=layered([0.3, 1.1, 2.9]).replace("b = measure q;", "#pragma braket result state_vector"))
    plain = StateVectorSimulator().run(program, shots=0).resultTypes[0].value
    install()
    for angles in ([0.7, 0.2, 1.3], [0.3, 1.1, 2.9]):  # the second reuses the first's shape
        cached = StateVectorSimulator().run(
            Program(source=layered(angles).replace("b = measure q;", "#pragma braket result state_vector")),
            shots=0).resultTypes[0].value
    np.testing.assert_allclose(cached, plain)


def test_the_cache_keeps_within_its_byte_budget():
    from jobforge.workloads.braket.parse_cache import ShapeCache

    cache = ShapeCache(max_bytes=8_000)
    for qubits in range(1, 12):  # a new shape each time
        source = "OPENQASM 3.0;\nqubit[12] q;\n" + "".join(f"rx(0.5) q[{i}];\n" for i in range(qubits))
        cache.parse(source)
        assert cache._bytes <= 8_000
    assert 0 < len(cache._shapes) < 11
