"""The code's shape: the reference model depends on nothing that runs it, and no module imports
itself back through another (a cycle makes import order matter and hides what depends on what)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("chatbot", "training", "corpora")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_imports() -> dict[str, set[str]]:
    """Each project module -> the project modules it imports, wherever in the file (a function's
    own import counts too)."""
    modules = {module_name(p): p for package in PACKAGES for p in (ROOT / package).rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        found = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                found |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.add(node.module)
                found |= {f"{node.module}.{a.name}" for a in node.names}
        graph[name] = {m for m in found if m in modules and m != name}
    return graph


def test_no_import_cycles():
    graph = project_imports()
    assert len(graph) > 30
    done, path = set(), []

    def visit(module):
        if module in path:
            raise AssertionError("import cycle: " + " -> ".join(path[path.index(module) :] + [module]))
        if module in done:
            return
        path.append(module)
        for other in sorted(graph[module]):
            # a package importing its own submodules is how packages are built, not a cycle
            if not other.startswith(module + "."):
                visit(other)
        path.pop()
        done.add(module)

    for module in sorted(graph):
        visit(module)


def test_the_reference_model_knows_nothing_of_what_runs_it():
    graph = project_imports()
    assert graph["chatbot.model"] <= {
        "chatbot.errors",
        "chatbot.i18n",  # its one error speaks the interface's language
        "chatbot.model_config",
        "chatbot.tokenizer",
        "chatbot.validation",
    }
    assert all(not m.startswith("chatbot.engine") for m in graph["chatbot.model"])
    assert "chatbot.model" in graph["chatbot.engine.flat"]
