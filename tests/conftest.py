"""Shared test setup: the ``../shared`` material, an isolated dataset cache, thread count."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent
SHARED = ROOT.parent / "shared"
SHARED_REASON = "../shared (CIFAR-10 archive and checkpoints) not present"

# Two cores on the reference machine: use both in-process, deliberately and reproducibly, or
# one per pytest-xdist worker when ``make test`` runs two of them side by side. CLI subprocesses
# started by the tests get OMP_NUM_THREADS=1 (they run side by side).
XDIST_WORKER = os.environ.get("PYTEST_XDIST_WORKER")
torch.set_num_threads(1 if XDIST_WORKER else 2)


def shared_present() -> bool:
    return (SHARED / "data" / "cifar10-jpeg.tar.gz").is_file() and (
        SHARED / "models" / "resnet20-cifar10.th").is_file()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "needs_shared: needs ../shared (CIFAR-10 archive, "
                            "checkpoints); skipped when it is absent")


RAY_GROUP = ("tests/test_ray.py", "tests/test_ray_jobs.py", "tests/test_ray_train.py",
             "tests/test_search.py::TestUpdatesPerTransition")
"""Where the tests that start Ray live (nodeid prefixes): under ``make test`` (``pytest -n 2
--dist loadgroup``) they run one after another on one worker, so one local Ray instance at a
time takes the cores, Ray's slowest fixtures (Ray Train's workers) are built once, and the other
worker runs the remaining modules beside them. A ``ray``-marked test elsewhere fails the
collection, so the list cannot fall behind."""


def _group(nodeid: str) -> str:
    """The work unit of a test under ``make test``: ``"ray"`` for :data:`RAY_GROUP`, otherwise
    its module (so a module's fixtures, such as its CLI runs, are built once)."""
    return "ray" if nodeid.startswith(RAY_GROUP) else nodeid.split("::")[0]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Refuse a ``ray`` test outside :data:`RAY_GROUP`; under xdist, put Ray's group first."""
    stray = [i.nodeid for i in items if i.get_closest_marker("ray") and _group(i.nodeid) != "ray"]
    if stray:
        raise pytest.UsageError(f"ray-marked tests outside conftest.RAY_GROUP: {stray[:3]}; "
                                "add their module (or class) to RAY_GROUP")
    if XDIST_WORKER:  # Ray's group first: it is the longest, the other worker fills beside it
        items.sort(key=lambda i: _group(i.nodeid) != "ray")


@pytest.hookimpl(optionalhook=True)  # pytest without pytest-xdist still runs the suite
def pytest_xdist_make_scheduler(config: pytest.Config, log):
    """``--dist loadgroup`` by :func:`_group`. (xdist 3.8's own reads ``xdist_group`` marks
    through a node-id suffix that pytest 9.2 no longer lets a plugin set.) With
    ``--no-loadscope-reorder`` the units go out in the collection's order, Ray's first."""
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class ByGroup(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return _group(nodeid)

    return ByGroup(config, log)


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("needs_shared") and not shared_present():
        pytest.skip(SHARED_REASON)


@pytest.fixture(scope="session")
def needs_shared() -> Path:
    """The ``../shared`` folder; skips the test when it is absent."""
    if not shared_present():
        pytest.skip(SHARED_REASON)
    return SHARED


@pytest.fixture
def isolated_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point ``AMC_CACHE_DIR`` at a fresh folder and empty the in-memory dataset cache, so a
    test neither reads nor pollutes the user's ``~/.cache/amc``.

    Only for tests that decode their own small data: CIFAR tests keep the default cache so the
    15 s decode of the shared archive happens at most once per machine.
    """
    import amc.data.datasets

    cache = tmp_path / "amc-cache"
    monkeypatch.setenv("AMC_CACHE_DIR", str(cache))
    monkeypatch.setattr(amc.data.datasets, "_MEMORY", {})
    return cache


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for the module using it (deterministic, and no oversubscription
    while CLI subprocesses run beside it); the count is restored afterwards."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="session")
def digits_ckpt(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One trained digits CNN (3 epochs, 1 thread: the same weights on every machine) for the
    whole session; tests read it and never write to it."""
    from amc.train.digits import train_digits

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return str(train_digits(tmp_path_factory.mktemp("digits"), epochs=3))
    finally:
        torch.set_num_threads(old)


@pytest.fixture(scope="session")
def tv_resnet18() -> torch.nn.Module:
    """torchvision resnet18 without weights (building it takes ~2 s, so share it)."""
    from amc.models.registry import create_model

    return create_model("tv:resnet18")


def _run_script(path: Path, argv: list[str]) -> None:
    """Load ``path`` (a script of ``scripts/``) and call its ``main`` with ``argv``: as its
    argument where ``main`` takes one, and as ``sys.argv`` (which names the program)."""
    import inspect
    import runpy
    import sys

    main = runpy.run_path(str(path), run_name=path.stem)["main"]
    old, sys.argv = sys.argv, [path.name, *argv]
    try:
        if "argv" in inspect.signature(main).parameters:
            main(argv)
        else:
            main()
    finally:
        sys.argv = old


@pytest.fixture(scope="session")
def run_script():
    """:func:`_run_script`: a script's ``main`` called in-process with the given arguments."""
    return _run_script


@pytest.fixture(scope="session")
def synth8(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A 4-class synthetic image folder of 8x8 images (96 train, 16 per other split)."""
    from amc.data.synthetic import write_synthetic_imagefolder

    root = tmp_path_factory.mktemp("synth8")
    write_synthetic_imagefolder(root, 96, 16, classes=4, min_size=8, max_size=8)
    return f"imagefolder:{root}"


@pytest.fixture(scope="session")
def resnet20_4(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A 4-class CIFAR ResNet-20 checkpoint of fixed random weights (a search builds its
    network from a checkpoint)."""
    from amc.models.checkpoint import save_model
    from amc.models.registry import create_model

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("resnet20_4") / "resnet20.pt"
    save_model(create_model("resnet20", num_classes=4), path, "resnet20", {})
    return str(path)
