"""Each extra of setup.py installs what its README path needs.

For each extra, a README path that needs it runs in a new Python process that can import
only what `pip install -e .[EXTRA]` installs: the core requirements and the extra's,
followed through every installed distribution's declared requirements (markers evaluated;
a requirement's own extras followed). Every other installed distribution's modules are
hidden from the import system there, as if absent. So a module installed only because
something else brought it does not count, and the check holds in CI's [test] environment,
which has every extra: tensorflow-datasets imports importlib_resources but declares it only
for Python < 3.9, and a [tfds] extra without it fails here with issue 15's
ModuleNotFoundError even where importlib_resources is installed. The [test] extra is
checked against the modules the tests import.
"""

import ast
import json
import pathlib
import subprocess
import sys
from importlib import metadata

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO_ROOT = pathlib.Path(__file__).absolute().parent.parent


def setup_requirements() -> tuple[list[str], dict[str, list[str]]]:
    """(install_requires, extras_require) as setup.py states them (read, not installed
    metadata: an edit of setup.py counts before any reinstall)."""
    tree = ast.parse((REPO_ROOT / "setup.py").read_text(encoding="utf-8"))
    call = next(node for node in ast.walk(tree) if isinstance(node, ast.Call)
                and getattr(node.func, "id", None) == "setup")
    keywords = {k.arg: k.value for k in call.keywords}
    return (ast.literal_eval(keywords["install_requires"]),
            ast.literal_eval(keywords["extras_require"]))


def installed_closure(requirements) -> tuple[dict[str, set[str]], set[str]]:
    """The distributions ``requirements`` install, as far as this environment shows:
    (canonical name -> extras asked of it, for the installed ones; names not installed).
    Each installed distribution's Requires-Dist is followed, its markers evaluated here
    (``extra`` set to each extra asked of it, or '' for its own requirements)."""
    environment = default_environment()
    todo = [Requirement(r) for r in requirements]
    seen: dict[str, set[str]] = {}
    missing: set[str] = set()
    while todo:
        requirement = todo.pop()
        name = canonicalize_name(requirement.name)
        if requirement.marker is not None and not requirement.marker.evaluate(
                {**environment, "extra": ""}):
            continue  # a root requirement for another platform (the followed ones are
            # filtered below, where the extra to evaluate with is known)
        first = name not in seen
        new = set(requirement.extras) - seen.get(name, set())
        if not first and not new:
            continue
        try:
            declared = metadata.distribution(requirement.name).requires or []
        except metadata.PackageNotFoundError:
            missing.add(name)
            continue
        seen.setdefault(name, set()).update(new)
        wanted = ([""] if first else []) + sorted(new)
        for line in declared:
            sub = Requirement(line)
            if sub.marker is None:
                if first:
                    todo.append(sub)
            elif any(sub.marker.evaluate({**environment, "extra": e}) for e in wanted):
                sub.marker = None
                todo.append(sub)
    return seen, missing


def module_providers() -> dict[str, set[str]]:
    """Top-level module -> canonical names of the installed distributions holding it."""
    return {module: {canonicalize_name(d) for d in dists}
            for module, dists in metadata.packages_distributions().items()}


def uncovered(modules, requirements) -> list[str]:
    """The modules of ``modules`` that no distribution in ``requirements``' closure
    provides, each with what does provide it here; [] when all are covered."""
    closure, missing = installed_closure(requirements)
    providers = module_providers()
    problems = []
    for module in sorted(modules):
        found = providers.get(module, set())
        if found & set(closure):
            continue
        if found:
            problems.append(f"{module} (installed here by {', '.join(sorted(found))}, which "
                            f"nothing in the requirements declares)")
        else:
            problems.append(f"{module} (no installed distribution provides it)")
    if problems and missing:
        problems.append(f"[not installed here, so not followed: {', '.join(sorted(missing))}]")
    return problems


# A README path in a new process that can import only what `pip install -e .[EXTRA]` would
# install: every finder on sys.meta_path is wrapped so that a top-level module of the
# blocked list (argv[1]: those that only distributions outside the extra's closure provide)
# is not found, as in a fresh environment; `importlib.util.find_spec` says None for it too,
# so optional imports fall back as they would there. The code (argv[3]) runs as __main__
# with argv[4:] as its sys.argv. At exit, argv[2] gets (as JSON) the top-level modules
# imported and the blocked ones that were asked for.
_SANDBOX = r"""
import atexit, json, sys

with open(sys.argv[1]) as f:
    BLOCKED = frozenset(json.load(f))
ASKED = set()


class _Blocking:
    def __init__(self, finder):
        self._finder = finder

    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in BLOCKED:
            ASKED.add(name.partition(".")[0])
            return None
        find_spec = getattr(self._finder, "find_spec", None)
        return None if find_spec is None else find_spec(name, path, target)

    def __getattr__(self, attribute):
        return getattr(self._finder, attribute)


sys.meta_path[:] = [_Blocking(finder) for finder in sys.meta_path]


def _report(path=sys.argv[2]):
    imported = sorted({name.partition(".")[0] for name, module in list(sys.modules.items())
                       if module is not None})
    with open(path, "w") as f:
        json.dump({"imported": imported, "blocked": sorted(ASKED)}, f)


atexit.register(_report)
code = sys.argv[3]
sys.argv = sys.argv[4:] or ["-c"]
exec(compile(code, "<README path>", "exec"), {"__name__": "__main__"})
"""

# Top-level modules of this repository (the package, the benchmark harness, the tools and
# the tests, which put their own folders on sys.path), not of any distribution.
LOCAL_MODULES = ({p.stem for p in REPO_ROOT.iterdir()
                  if not p.name.startswith(".") and (p.is_dir() or p.suffix == ".py")}
                 | {p.stem for d in ("tests", "tools") for p in (REPO_ROOT / d).glob("*.py")})


def blocked_modules(requirements) -> set[str]:
    """Top-level modules that only installed distributions outside ``requirements``'
    closure provide: what a fresh install of ``requirements`` would lack. (A namespace
    package shared with a distribution inside, such as google, stays importable.)"""
    closure, _ = installed_closure(requirements)
    return {module for module, dists in module_providers().items()
            if not dists & set(closure) and module not in sys.stdlib_module_names
            and module not in LOCAL_MODULES}


def run_with_only(requirements, tmp_path, code, *argv, name="path"):
    """Runs ``code`` (with ``argv``) where only ``requirements``' closure is importable.
    Returns (the finished process, {"imported": [...], "blocked": [...]})."""
    (tmp_path / f"{name}-blocked.json").write_text(
        json.dumps(sorted(blocked_modules(requirements))))
    report = tmp_path / f"{name}-report.json"
    done = subprocess.run(
        [sys.executable, "-c", _SANDBOX, str(tmp_path / f"{name}-blocked.json"), str(report),
         code, *map(str, argv)], cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    return done, json.loads(report.read_text())


# ----------------------------------------------------------------- the README paths

def _tfds_path(tmp_path):
    """README: TFDS's imagenet2012 builder prepared from the ILSVRC-2012 tars (small ones
    here, in the same layout), then the prepared split read as `--config.data.source=tfds`
    reads it."""
    pytest.importorskip("tensorflow_datasets", reason="the [tfds] extra is not installed")
    from test_tfds import write_imagenet_manual_dir

    write_imagenet_manual_dir(tmp_path / "manual", per_class=2, val_images=2)
    data_dir, manual_dir = str(tmp_path / "tfds"), str(tmp_path / "manual")
    code = f"""
import tensorflow_datasets as tfds
tfds.builder("imagenet2012", data_dir={data_dir!r}).download_and_prepare(
    download_config=tfds.download.DownloadConfig(manual_dir={manual_dir!r}))
from alexnet_tf.data import sources
split = sources.TfdsSource.from_prepared("imagenet2012", {data_dir!r}, "train", shuffle_buffer=4)
next(iter(split.records(training=True)))
"""
    return code, []


def _plots_path(tmp_path):
    """README: `python tools/plot_curves.py --workdir=runs/demo --output=curves.png`, on a
    run's TensorBoard logs."""
    import tensorflow as tf

    for writer, tags in (("train", ("loss", "top1_error", "learning_rate")),
                         ("eval", ("loss", "top1_error", "top5_error"))):
        with tf.summary.create_file_writer(str(tmp_path / "run" / "tensorboard" / writer)
                                           ).as_default():
            for step in (1, 2):
                for tag in tags:
                    tf.summary.scalar(tag, 1.0 / step, step=step)
    code = "import runpy\nrunpy.run_path('tools/plot_curves.py', run_name='__main__')"
    return code, ["plot_curves.py", f"--workdir={tmp_path / 'run'}",
                  f"--output={tmp_path / 'curves.png'}"]


def _imagenet_path(tmp_path):
    """README: the devkit's ground truth with `--val_meta_file=meta.mat` (read by
    `imagenet.read_meta_mat`, as tools/build_tfrecords.py reads it)."""
    import numpy as np

    scipy_io = pytest.importorskip("scipy.io", reason="the [imagenet] extra is not installed")
    synsets = np.zeros((1, 1), dtype=[("ILSVRC2012_ID", "O"), ("WNID", "O")])
    synsets[0, 0] = (np.array([[1]], np.uint16), np.array(["n01440764"]))
    scipy_io.savemat(str(tmp_path / "meta.mat"), {"synsets": synsets})
    code = ("import sys\nfrom alexnet_tf.data import imagenet\n"
            "assert imagenet.read_meta_mat(sys.argv[0]) == {1: 'n01440764'}")
    return code, [tmp_path / "meta.mat"]


def _torch_path(tmp_path):
    """README: `tools/convert_weights.py --source=torchvision --input=X.pth` reads the
    .pth (`torchvision_pth.read_torchvision_state_dict`)."""
    torch = pytest.importorskip("torch", reason="the [torch] extra is not installed")
    torch.save({"features.0.bias": torch.zeros(2)}, tmp_path / "weights.pth")
    code = ("import sys\nfrom alexnet_tf.weights import torchvision_pth\n"
            "assert list(torchvision_pth.read_torchvision_state_dict(sys.argv[0])) == "
            "['features.0.bias']")
    return code, [tmp_path / "weights.pth"]


def _bench_path(tmp_path):
    """README: `tools/benchmark.py --benchmark=model` with torch: PyTorch's side of the
    matmul peak (`torch_peer.TorchMatmul`, bfloat16) and the peer's network."""
    del tmp_path
    pytest.importorskip("torch", reason="the [bench] extra is not installed")
    code = ("from benchmarks.torch_peer import TorchMatmul, torch_model\n"
            "m = TorchMatmul(64, 'bfloat16')\n"
            "assert m.gflops(m()) > 0\n"
            "torch_model('paper', width=0.125, image_size=67)")
    return code, []


def _serving_path(tmp_path):
    """README: the export's warmup file and `alexnet-predict` (TF Serving's protos, gRPC)."""
    del tmp_path
    return ("import alexnet_tf.serving.client, alexnet_tf.serving.protocol\n"
            "import alexnet_tf.cli.predict"), []


# extra -> the README path that needs it.
README_PATHS = {
    "tfds": _tfds_path,
    "plots": _plots_path,
    "imagenet": _imagenet_path,
    "torch": _torch_path,
    "serving": _serving_path,
    "bench": _bench_path,
}
# The [test] extra holds every other extra but torch and bench (torch's too): CI installs
# torch's CPU wheel itself where it can (.ci/run), and the torch tests skip without it.
NOT_IN_TEST = {"torch", "bench"}


def test_every_extra_has_a_checked_readme_path():
    _, extras = setup_requirements()
    assert set(extras) == set(README_PATHS) | {"test"}


@pytest.mark.parametrize("extra", ["tfds", "plots", "imagenet", "torch", "serving",
                                   "bench"])
def test_extra_installs_what_its_readme_path_imports(extra, tmp_path):
    core, extras = setup_requirements()
    code, argv = README_PATHS[extra](tmp_path)  # skips where the extra's module is absent
    _, missing = installed_closure(core + extras[extra])
    if missing:
        pytest.fail(f"This environment lacks {sorted(missing)}, which the [{extra}] extra "
                    f"installs: pip install -e '.[test]' (or '.[{extra}]') first.",
                    pytrace=False)
    done, report = run_with_only(core + extras[extra], tmp_path, code, *argv, name=extra)
    if done.returncode:
        error = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
        pytest.fail(
            f"README's path for the [{extra}] extra fails where only what `pip install -e "
            f".[{extra}]` installs can be imported: {error}\nIt asked for these modules, "
            f"which that does not install (add what it needs to extras_require[{extra!r}] "
            f"in setup.py; some may be optional): {report['blocked']}\n"
            f"{done.stderr[-2000:]}", pytrace=False)
    if extra == "tfds":  # the path reaches issue 15's module
        assert {"tensorflow_datasets", "importlib_resources"} <= set(report["imported"])


def test_the_check_hides_a_module_that_is_installed_but_not_declared():
    # importlib_resources is installed here ([tfds] and [test] name it), but
    # tensorflow-datasets does not declare it on this Python: the pre-issue-15 extra
    # (tensorflow-datasets alone) must not be taken to provide it.
    pytest.importorskip("tensorflow_datasets", reason="the [tfds] extra is not installed")
    pytest.importorskip("importlib_resources", reason="importlib_resources is not installed")
    core, extras = setup_requirements()
    before = core + ["tensorflow-datasets>=4.9"]
    assert "importlib_resources" in blocked_modules(before)
    assert "tensorflow_datasets" not in blocked_modules(before)
    problems = uncovered({"tensorflow_datasets", "importlib_resources"}, before)
    assert len(problems) == 1 and problems[0].startswith(
        "importlib_resources (installed here by importlib-resources"), problems
    assert "importlib_resources" not in blocked_modules(core + extras["tfds"])


def test_test_extra_holds_every_other_extra():
    _, extras = setup_requirements()
    test = {canonicalize_name(Requirement(r).name): r for r in extras["test"]}
    for extra, requirements in extras.items():
        if extra in NOT_IN_TEST | {"test"}:
            continue
        for requirement in requirements:
            name = canonicalize_name(Requirement(requirement).name)
            assert test.get(name) == requirement, (
                f"extras_require['test'] should hold {requirement!r} of the [{extra}] extra "
                f"(it has {test.get(name)!r})")


def _test_imports() -> set[str]:
    """Top-level modules the tests import (anywhere in a test file) or importorskip, and
    xdist (README's test command runs pytest -n 2)."""
    modules = {"xdist"}
    for path in sorted((REPO_ROOT / "tests").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                modules.update(alias.name.partition(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                modules.add(node.module.partition(".")[0])
            elif (isinstance(node, ast.Call) and getattr(node.func, "attr", None) ==
                  "importorskip" and node.args and isinstance(node.args[0], ast.Constant)):
                modules.add(str(node.args[0].value).partition(".")[0])
    return {m for m in modules if m not in sys.stdlib_module_names and m not in LOCAL_MODULES}


def test_test_extra_installs_what_the_tests_import():
    core, extras = setup_requirements()
    modules = _test_imports()
    assert {"tensorflow", "pytest", "scipy", "matplotlib", "tensorflow_datasets"} <= modules
    # torch is optional (NOT_IN_TEST): its tests skip without it.
    problems = uncovered(modules - {"torch"}, core + extras["test"])
    assert not problems, ("`pip install -e .[test]` does not install what the tests import; "
                          "add to extras_require['test']: " + "; ".join(problems))
