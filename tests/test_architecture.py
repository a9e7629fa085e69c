"""The import direction of the code base: amc core <- envs <- agents <- cli/scripts.

Every module's imports (also those inside functions) are read with ``ast``; the rules:

* nothing outside ``amc/cli`` imports ``amc.cli``;
* the core (``amc/`` outside ``amc/cli``) imports neither the RL side (``amc.envs``,
  ``amc.agents``) nor gymnasium, stable-baselines3 or Ray;
* ``envs/`` does not import ``amc.agents``;
* module-level imports have no cycle, and the core's sub-packages form no cycle either;
* the package (not ``scripts/``) imports the libraries that are slow to import and needed by
  few commands (``SLOW_LIBS``) inside the functions that use them: every ``amc`` command pays
  for what its modules import at start-up (SciPy alone: 0.9 s, torchvision 1.5 s here).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TREES = {"amc": "amc", "envs": "amc.envs", "agents": "amc.agents"}
RL_LIBS = ("gymnasium", "stable_baselines3", "ray")
SLOW_LIBS = ("scipy", "sklearn", "matplotlib", "torchvision", "onnx", "onnxruntime",
             "onnxscript", "tensorboard")


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT)
    top = TREES.get(rel.parts[0], rel.parts[0])
    parts = [*top.split("."), *rel.with_suffix("").parts[1:]]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _type_checking(node: ast.If) -> bool:
    return isinstance(node.test, ast.Name | ast.Attribute) and "TYPE_CHECKING" in ast.unparse(
        node.test)


def imports_of(source: str, name: str, is_pkg: bool) -> list[tuple[str, bool]]:
    """(imported module, at module level?) for every import in ``source``."""
    tree = ast.parse(source)
    out: list[tuple[str, bool]] = []
    base = name.split(".") if is_pkg else name.split(".")[:-1]

    def visit(node: ast.AST, top: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _type_checking(child):
                continue  # annotations only
            if isinstance(child, ast.Import):
                out.extend((a.name, top) for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    pkg = base[:len(base) - child.level + 1]
                    mod = ".".join(pkg + ([child.module] if child.module else []))
                else:
                    mod = child.module or ""
                out.append((mod, top))
                out.extend((f"{mod}.{a.name}", top) for a in child.names)
            else:
                inner = isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
                visit(child, top and not inner)

    visit(tree, True)
    return out


def project_modules() -> dict[str, list[tuple[str, bool]]]:
    mods = {}
    for top in (*TREES, "scripts"):
        for path in sorted((ROOT / top).rglob("*.py")):
            name = module_name(path)
            mods[name] = imports_of(path.read_text(), name, path.name == "__init__.py")
    return mods


def violations(mods: dict[str, list[tuple[str, bool]]]) -> list[str]:
    """Every broken rule, one line each (empty: the imports flow one way)."""
    bad = []
    known = set(mods)

    def is_(target: str, prefix: str) -> bool:
        return target == prefix or target.startswith(prefix + ".")

    for name, imps in mods.items():
        in_cli = is_(name, "amc.cli")
        core = is_(name, "amc") and not (in_cli or is_(name, "amc.envs")
                                         or is_(name, "amc.agents"))
        for target, top in imps:
            if top and not is_(name, "scripts") and any(is_(target, lib) for lib in SLOW_LIBS):
                bad.append(f"{name} imports {target} at module level (slow to import: inside "
                           "the function that needs it)")
            if is_(target, "amc.cli") and not in_cli:
                bad.append(f"{name} imports {target} (only amc.cli may)")
            if core and (is_(target, "amc.envs") or is_(target, "amc.agents")
                         or any(is_(target, lib) for lib in RL_LIBS)):
                bad.append(f"{name} imports {target} (the core never imports the RL side)")
            if is_(name, "amc.envs") and is_(target, "amc.agents"):
                bad.append(f"{name} imports {target} (envs come before agents)")
    # module-level cycles
    graph = {n: {t for t, top in imps if top and t in known and t != n}
             for n, imps in mods.items()}
    bad += [f"import cycle: {' -> '.join(c)}" for c in _cycles(graph)]
    # sub-package cycles in the core (lazy imports included)
    def pkg(m: str) -> str | None:
        parts = m.split(".")
        if len(parts) < 3 or parts[0] != "amc" or parts[1] in ("cli", "envs", "agents"):
            return None
        return ".".join(parts[:2])

    pgraph: dict[str, set[str]] = {}
    for n, imps in mods.items():
        if (p := pkg(n)) is None:
            continue
        for t, _ in imps:
            q = pkg(t) if t in known else None
            if q and q != p:
                pgraph.setdefault(p, set()).add(q)
    bad += [f"sub-package cycle: {' -> '.join(c)}" for c in _cycles(pgraph)]
    return bad


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    found, state, stack = [], {}, []

    def dfs(n: str) -> None:
        state[n] = 1
        stack.append(n)
        for m in sorted(graph.get(n, ())):
            if state.get(m) == 1:
                found.append(stack[stack.index(m):] + [m])
            elif m not in state:
                dfs(m)
        stack.pop()
        state[n] = 2

    for n in sorted(graph):
        if n not in state:
            dfs(n)
    return found


def test_imports_flow_one_way():
    mods = project_modules()
    assert "amc.prune.units" in mods and "amc.agents.search" in mods and "scripts.bench_ray" in mods
    assert violations(mods) == []


@pytest.mark.parametrize("mods, expect", [
    ({"amc.prune.units": [("amc.cli.common", False)]}, "only amc.cli may"),
    ({"scripts.bench": [("amc.cli", True)]}, "only amc.cli may"),
    ({"amc.models.registry": [("ray", False)]}, "never imports the RL side"),
    ({"amc.data.datasets": [("amc.agents.search", False)]}, "never imports the RL side"),
    ({"amc.envs.pruning_env": [("amc.agents.ddpg", True)], "amc.agents.ddpg": []},
     "envs come before agents"),
    ({"amc.a.x": [("amc.b.y", True)], "amc.b.y": [("amc.a.x", True)]}, "import cycle"),
    ({"amc.a.x": [("amc.b.y", True)], "amc.b.y": [], "amc.b.z": [("amc.a.w", False)],
      "amc.a.w": []}, "sub-package cycle"),
    ({"amc.agents.noise": [("scipy.stats", True)]}, "slow to import"),
    ({"amc.report.render": [("matplotlib", True)]}, "slow to import"),
])
def test_the_checker_catches_each_wrong_import(mods, expect):
    assert any(expect in v for v in violations(mods)), violations(mods)


def test_relative_imports_resolve():
    src = "from .config import SearchConfig\nfrom . import noise\n"
    got = [t for t, _ in imports_of(src, "amc.agents.search", is_pkg=False)]
    assert "amc.agents.config" in got and "amc.agents.noise" in got
    got = [t for t, _ in imports_of(src, "amc.agents", is_pkg=True)]
    assert "amc.agents.config" in got


def shell_python(path: Path) -> list[tuple[str, str]]:
    """(tag, program) for the Python a shell script runs: here-documents (``<<'EOF'`` ...
    ``EOF``, tagged by their delimiter) and ``python -c "..."`` (tagged ``-c`` and the line)."""
    text = path.read_text()
    docs = re.findall(r"<<'?(\w+)'?\n(.*?)\n\1\n", text, flags=re.S)
    inline = [(f"-c:{text[:m.start()].count(chr(10)) + 1}", m.group(1))
              for m in re.finditer(r'(?:python3?|PY\}?)"? -c "([^"]*)"', text)]
    return docs + inline


def _submodule(name: str) -> bool:
    import importlib

    try:
        importlib.import_module(name)
    except ImportError:
        return False
    return True


def missing_names(source: str) -> list[str]:
    """``amc`` modules and names that ``source`` imports and that do not exist."""
    import importlib

    bad = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "amc":
            try:
                mod = importlib.import_module(node.module)
            except ImportError:
                bad.append(node.module)
                continue
            bad += [f"{node.module}.{a.name}" for a in node.names
                    if not hasattr(mod, a.name) and not _submodule(f"{node.module}.{a.name}")]
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] == "amc":
                    try:
                        importlib.import_module(a.name)
                    except ImportError:
                        bad.append(a.name)
    return bad


def test_every_amc_import_names_what_exists():
    """Every ``from amc... import name`` and ``import amc...`` in the package and the scripts,
    also those inside functions that the tests never call (GPU branches, benchmarks), names a
    module or attribute that exists."""
    files = [p for top in (*TREES, "scripts") for p in sorted((ROOT / top).rglob("*.py"))]
    assert len(files) > 100
    missing = {str(p.relative_to(ROOT)): m for p in files if (m := missing_names(p.read_text()))}
    assert missing == {}


def test_shell_scripts_python_imports_exist():
    """The Python inside scripts/*.sh imports what exists (a moved module broke the GPU
    check's summary, which only runs on a GPU machine)."""
    programs = {f"{p.name}:{tag}": body for p in sorted((ROOT / "scripts").glob("*.sh"))
                for tag, body in shell_python(p)}
    assert "gpu_check.sh:EOF" in programs, set(programs)  # the summary, and the device check:
    assert any(k.startswith("gpu_check.sh:-c:") and "amc.utils.device" in v
               for k, v in programs.items()), set(programs)
    assert {k: missing_names(v) for k, v in programs.items() if missing_names(v)} == {}
    assert missing_names("from amc.train.accel import precision\n") == ["amc.train.accel"]
    assert missing_names("from amc.utils.precision import nope\n") == [
        "amc.utils.precision.nope"]


def test_no_private_reach_ins():
    """No ``obj._name`` of the private attributes that other modules used to reach into."""
    pat = re.compile(r"[A-Za-z_\])]\.(_layers|_plans|_pm|_bisect|_tensors)\b")
    hits = []
    for top in (*TREES, "scripts", "tests"):
        for path in (ROOT / top).rglob("*.py"):
            for i, line in enumerate(path.read_text().splitlines(), 1):
                if pat.search(line) and not re.search(r"\bself\._", line):
                    hits.append(f"{path.relative_to(ROOT)}:{i}: {line.strip()}")
    assert hits == []
