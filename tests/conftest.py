"""Shared test setup: the ``../shared`` material, an isolated dataset cache, thread count."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent
SHARED = ROOT.parent / "shared"
SHARED_REASON = "../shared (CIFAR-10 archive and checkpoints) not present"

# Two cores on the reference machine: use both in-process, deliberately and reproducibly.
# CLI subprocesses started by the tests get OMP_NUM_THREADS=1 (they run side by side).
torch.set_num_threads(2)


def shared_present() -> bool:
    return (SHARED / "data" / "cifar10-jpeg.tar.gz").is_file() and (
        SHARED / "models" / "resnet20-cifar10.th").is_file()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "needs_shared: needs ../shared (CIFAR-10 archive, "
                            "checkpoints); skipped when it is absent")


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
