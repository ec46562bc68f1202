"""The README stays a short front door: at most 250 lines, the two commands first, RESULTS.md and the
other references linked and present, and a concept map that names only what exists (every file:function
in it is defined in that file)."""
import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README_MAX_LINES = 250
TEST_COMMAND = "pip install torch==2.13.0 -r requirements.txt && python -m pytest -q"  # what .ci/run runs


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


def markdown_links(text):
    """The local .md files a Markdown text links to, without their #anchors."""
    return {m.split("#", 1)[0] for m in re.findall(r"\]\(([^)\s]+\.md(?:#[^)\s]*)?)\)", text) if "://" not in m}


def test_readme_is_short_and_starts_with_the_two_commands():
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines, at most {README_MAX_LINES}"
    first = lines[:40]
    assert TEST_COMMAND in first, "the test command must stand on its own line in the README's first 40 lines"
    assert any(l.startswith("pip install ") and "python train.py" in l for l in first), "the train command, in the first 40 lines"


def test_readme_links_results_and_every_linked_file_exists():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    links = markdown_links(readme)
    assert "RESULTS.md" in links
    for doc in {"README.md"} | links:
        missing = [l for l in markdown_links((ROOT / doc).read_text(encoding="utf-8")) if not (ROOT / l).exists()]
        assert not missing, f"{doc} links to files that do not exist: {missing}"


def test_link_check_can_fail():
    assert markdown_links("see [the results](RESULTS.md#summary) and [x](https://a.b/c.md)") == {"RESULTS.md"}
    assert not (ROOT / "NO_SUCH_FILE.md").exists()
