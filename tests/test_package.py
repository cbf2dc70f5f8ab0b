"""The package's shape: modules import one way (no cycle, deferred imports included), and
the config layer, the architecture table and the run directory load without TensorFlow."""

import ast
import subprocess
import sys

from conftest import REPO_ROOT


def _modules():
    package = REPO_ROOT / "alexnet_tf"
    modules = {}
    for path in package.rglob("*.py"):
        name = path.relative_to(REPO_ROOT).with_suffix("").as_posix().replace("/", ".")
        modules[name.removesuffix(".__init__")] = path
    return modules


def _import_graph():
    """module -> the package's modules it imports anywhere (module level or in a function)."""
    modules = _modules()
    graph = {}
    for name, path in modules.items():
        edges = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                subs = [f"{node.module}.{a.name}" for a in node.names
                        if f"{node.module}.{a.name}" in modules]
                # `from pkg import submodule` imports the submodule, not pkg's names.
                targets = subs if len(subs) == len(node.names) else [node.module, *subs]
            else:
                continue
            edges.update(t for t in targets if t in modules and t != name)
        graph[name] = edges
    return graph


def _cycles(graph):
    """Strongly connected groups of more than one module (Tarjan)."""
    index, low, stack, on_stack, groups = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.add(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for v in graph:
        if v not in index:
            visit(v)
    return groups


def test_no_import_cycle():
    graph = _import_graph()
    assert "alexnet_tf.run" in graph and "alexnet_tf.task" in graph
    assert _cycles(graph) == []


def test_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_nothing_imports_the_training_loop_to_build_a_model():
    graph = _import_graph()
    importers = sorted(m for m, edges in graph.items() if "alexnet_tf.train.loop" in edges)
    assert importers == ["alexnet_tf.cli.train"], importers


def test_config_architecture_and_run_import_without_tensorflow():
    code = ("import sys, alexnet_tf, alexnet_tf.config, alexnet_tf.architecture, alexnet_tf.run;"
            "c = alexnet_tf.config.validate(alexnet_tf.config.base_config());"
            "print(sorted(m for m in ('tensorflow', 'keras') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
