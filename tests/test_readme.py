"""The README's concept map names only what exists: every file:function in it is defined in that file."""
import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def concept_map_names(readme):
    """The `file.py:name` (or `file.py:Class.method`) cells of the README's concept map table."""
    section = readme.split("## Concept map", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"`(\w+\.py):([\w.]+)`", section)


def defined_names(path):
    """Top-level functions, classes and assignments of a file, and each class's methods as Class.method."""
    names = set()
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
            if isinstance(node, ast.ClassDef):
                names |= {f"{node.name}.{n.name}" for n in node.body if isinstance(n, ast.FunctionDef)}
        elif isinstance(node, ast.Assign):
            names |= {t.id for t in node.targets if isinstance(t, ast.Name)}
    return names


def test_concept_map_names_exist():
    pairs = concept_map_names((ROOT / "README.md").read_text(encoding="utf-8"))
    assert len(pairs) >= 15  # the map is there, and was read
    missing = [f"{f}:{name}" for f, name in pairs if not (ROOT / f).exists() or name not in defined_names(ROOT / f)]
    assert not missing, f"the README's concept map names what does not exist: {missing}"


def test_concept_map_check_can_fail():
    readme = "## Concept map\n\n| a | `traces.py:no_such_function` |\n\n## Files\n"
    ((f, name),) = concept_map_names(readme)
    assert name not in defined_names(ROOT / f)
