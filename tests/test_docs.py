"""The docs' promises that a test can keep: the Quickstart and CI run the same commands."""

import re

from conftest import REPO_ROOT


def _quickstart_commands():
    readme = (REPO_ROOT / "README.md").read_text()
    section = readme.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.+?)\n```", section, flags=re.S)


def test_quickstart_is_two_commands_train_then_test():
    commands = _quickstart_commands()
    assert len(commands) == 2 and all("\n" not in c for c in commands), commands
    assert "alexnet-train --config=configs/demo.py" in commands[0]
    assert "pytest" in commands[1]


def test_ci_runs_the_readme_test_command_verbatim():
    ci = (REPO_ROOT / ".ci" / "run").read_text().splitlines()
    assert _quickstart_commands()[1] in ci


def test_workspace_map_names_every_module():
    workspace = (REPO_ROOT / "WORKSPACE.md").read_text()
    modules = [p.relative_to(REPO_ROOT).as_posix()
               for p in (REPO_ROOT / "alexnet_tf").rglob("*.py")
               if p.name not in ("__init__.py", "__main__.py")]
    missing = [m for m in modules if f"`{m}`" not in workspace]
    assert not missing, f"WORKSPACE.md does not map {missing}"
    for tool in (REPO_ROOT / "tools").glob("*.py"):
        assert f"`{tool.name}`" in workspace, tool.name


def _recipes():
    """WORKSPACE.md's "## How to ..." sections: title -> text."""
    workspace = (REPO_ROOT / "WORKSPACE.md").read_text()
    sections = re.split(r"\n## ", workspace)
    return {s.split("\n", 1)[0]: s for s in sections if s.startswith("How to add")}


def _defined_names(path):
    import ast

    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
    return names


def test_every_file_and_symbol_a_recipe_names_exists():
    """Recipes name files as `path` and symbols as `path:symbol`; each must exist, so that a
    recipe cannot point at something that was moved or renamed."""
    recipes = _recipes()
    assert {"How to add a variant", "How to add a dataset source",
            "How to add a serving signature"} <= set(recipes), sorted(recipes)
    for title, text in recipes.items():
        references = re.findall(r"`([\w./-]+\.(?:py|md))(?::([\w.]+))?`", text)
        assert references, f"{title!r} names no file"
        for path, symbol in references:
            file = REPO_ROOT / path
            assert file.exists(), f"{title!r} names {path}, which does not exist"
            if symbol:
                head = symbol.split(".")[0]
                assert head in _defined_names(file), f"{title!r}: {path} defines no {head!r}"
