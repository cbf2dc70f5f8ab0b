""".gitignore: what the documented commands write, run from the repository root, is ignored;
nothing tracked, and none of the package's own folders, is.

The output paths are read from the commands in README.md and docs/*.md (fenced code and
indented command lines): the values of --output, --output_dir, --export_dir, --workdir,
--json, --features_cache and --logdir, and shell redirections (``> request.json``).
Placeholders (DATA_DIR, RUN, ...), absolute paths and variables are not paths at the root.
"""

import re
import shutil
import subprocess

import pytest

from conftest import REPO_ROOT

DOCS = ["README.md", *sorted(p.relative_to(REPO_ROOT).as_posix()
                             for p in (REPO_ROOT / "docs").glob("*.md"))]
OUTPUT_FLAGS = ("output", "output_dir", "export_dir", "workdir", "json", "features_cache",
                "logdir")
# Written beside a named output without being named: dataset_stats.py's .json.
ALSO_WRITTEN = ["stats.json"]
# Must never be ignored: the package's folders that share a name with an output, files
# like the outputs elsewhere, the test fixtures.
NEVER_IGNORED = ["alexnet_tf/weights/new_converter.py", "alexnet_tf/data/stats.py",
                 "alexnet_tf/data/stats_extra.py", "tools/dataset_stats.py",
                 "alexnet_tf/export/new_module.py", "docs/figure.png",
                 "tests/fixtures/v1/figure.png", "tests/fixtures/v1/export/2/saved_model.pb",
                 "configs/new.py", "benchmarks/new.py"]


def _git(*args):
    return subprocess.run(["git", "-C", str(REPO_ROOT), *args], capture_output=True,
                          text=True, timeout=60)


@pytest.fixture(scope="module")
def git():
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    if _git("rev-parse", "--is-inside-work-tree").stdout.strip() != "true":
        pytest.skip("not a git work tree (an unpacked archive)")
    return _git


def _command_lines(text):
    """The lines of fenced code blocks and indented command lines."""
    lines, fenced = [], False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
        elif fenced or re.match(r"( {4,}|\t)(python|alexnet-|printf|curl|docker|tfds)\b", line):
            lines.append(line)
    return lines


def _is_root_path(value):
    return not (value.startswith(("/", "~", "$", "-")) or re.search(r"[A-Z]{2,}|[<>{}*]", value)
                or value in (".", ".."))


def documented_outputs():
    paths = set()
    for doc in DOCS:
        for line in _command_lines((REPO_ROOT / doc).read_text(encoding="utf-8")):
            for flag, value in re.findall(r"--(\w+)=([^\s\]\[()`'\"|;]+)", line):
                if flag in OUTPUT_FLAGS and _is_root_path(value):
                    paths.add(value.rstrip("/"))
            for value in re.findall(r"(?<![-=>])>\s*([\w./-]+)", line):
                if _is_root_path(value):
                    paths.add(value)
    return sorted(paths)


def test_the_docs_name_the_outputs_this_test_expects():
    outputs = documented_outputs()
    # A sample of what README's examples write at the root; the list is read, not kept.
    for expected in ("exports/alexnet", "weights/caffe", "stats.npz", "kernels.png",
                     "neighbours.png", "curves.png", "ensemble.json", "request.json",
                     "runs/demo"):
        assert expected in outputs, outputs
    assert not any(p.startswith("/") or p.isupper() for p in outputs), outputs


def test_every_documented_output_is_ignored(git):
    paths = documented_outputs() + ALSO_WRITTEN
    # --no-index: the rules alone, whether or not such a file exists or was added.
    result = git("check-ignore", "--no-index", "--verbose", "--non-matching", *paths)
    not_ignored = [line.split("\t", 1)[1] for line in result.stdout.splitlines()
                   if line.startswith("::")]
    assert not not_ignored, f"not in .gitignore: {not_ignored}"
    # And what a command writes inside those directories.
    inside = [f"{p}/1/saved_model.pb" for p in paths if "." not in p.rsplit("/", 1)[-1]]
    result = git("check-ignore", "--no-index", "--verbose", "--non-matching", *inside)
    assert not [line for line in result.stdout.splitlines() if line.startswith("::")]


def test_nothing_tracked_and_no_package_folder_is_ignored(git):
    tracked_but_ignored = git("ls-files", "--cached", "--ignored", "--exclude-standard")
    assert tracked_but_ignored.returncode == 0, tracked_but_ignored.stderr
    assert tracked_but_ignored.stdout.split() == []
    result = git("check-ignore", "--no-index", "--verbose", *NEVER_IGNORED)
    assert result.stdout == "", result.stdout  # status 1: none of them matched
