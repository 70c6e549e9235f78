"""The layout: imports flow one way between top-level packages and between canary/'s rooms (core, cluster,
objects, engine, controller, cli, bottom up), the decision core imports only apis/ and the standard library,
no two modules of canary/ import each other (directly or round a longer loop, inside a room too), the runtime
never imports a developer tool, and product modules stay small enough to read in one sitting.

The imports are read with ``ast`` (nothing is imported), including imports inside functions: a lazy import
is still a dependency.  The ``fledge`` command loads its programs by name (``canary.cli.PROGRAMS``), which is
the one deliberate exception: the engine depends on none of them.

The product is what the wheel ships (``pyproject.toml``); the developer tools are every other top-level
package of the checkout.
"""

from __future__ import annotations

import ast
import collections
import dataclasses
import functools
import pathlib
import sys
import tomllib

import pytest

pytestmark = pytest.mark.unit

ROOT = pathlib.Path(__file__).resolve().parents[2]
MAX_LINES = 400



@dataclasses.dataclass(frozen=True)
class Import:
    path: str  # the importing file, relative to the checkout
    target: str  # the imported module, resolved to a module or package of the checkout

    @property
    def source_top(self) -> str:
        return pathlib.PurePath(self.path).parts[0].removesuffix(".py")

    @property
    def target_top(self) -> str:
        return self.target.partition(".")[0]


def _tops() -> dict[str, pathlib.Path]:
    """Every top-level package or module of the checkout, tests excluded."""
    found = {path.name: path for path in ROOT.iterdir()
             if path.is_dir() and (path / "__init__.py").is_file() and path.name != "tests"}
    found.update({path.stem: path for path in ROOT.glob("*.py")})
    return found


def _product_tops() -> set[str]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    return {pattern.rstrip("*") for pattern in config["packages"]["find"]["include"]} | set(config["py-modules"])


def _module_name(path: pathlib.Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_module(name: str) -> bool:
    base = ROOT.joinpath(*name.split("."))
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def _resolve(name: str) -> str | None:
    """The longest prefix of ``name`` that is a module here: ``canary.models.Canary`` -> ``canary.models``."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        if _is_module(".".join(parts[:end])):
            return ".".join(parts[:end])
    return None


def _imports_of(path: pathlib.Path) -> set[str]:
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    wanted: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            wanted.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
                base = f"{anchor}.{node.module}" if node.module else anchor
            else:
                base = node.module or ""
            wanted.update(f"{base}.{alias.name}" for alias in node.names)
    return {target for target in map(_resolve, wanted) if target is not None}


@functools.cache
def _all_imports() -> tuple[Import, ...]:
    found = []
    for top, path in sorted(_tops().items()):
        files = [path] if path.is_file() else sorted(path.rglob("*.py"))
        for file in files:
            rel = str(file.relative_to(ROOT))
            found.extend(Import(rel, target) for target in sorted(_imports_of(file)) if not target.startswith(top + ".")
                         and target != top)
    return tuple(found)


def _package_graph(imports: tuple[Import, ...]) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = collections.defaultdict(set)
    for item in imports:
        if item.source_top != item.target_top:
            graph[item.source_top].add(item.target_top)
    return graph


def _reaches(graph: dict[str, set[str]], start: str, goal: str) -> bool:
    seen, todo = {start}, [start]
    while todo:
        for following in graph.get(todo.pop(), ()):
            if following == goal:
                return True
            if following not in seen:
                seen.add(following)
                todo.append(following)
    return False


def _in_cycle(graph: dict[str, set[str]], item: Import) -> bool:
    return item.source_top != item.target_top and _reaches(graph, item.target_top, item.source_top)


def test_the_walk_sees_the_packages_and_their_imports() -> None:
    """Guards the test itself: an empty walk would pass every other test here."""
    assert {"canary", "metrics", "routers", "notifiers", "loadtester", "redaction", "localkube"} <= set(_tops())
    assert Import("canary/engine/execute.py", "notifiers.alerts") in _all_imports()
    assert Import("canary/engine/webhooks.py", "redaction") in _all_imports()


def test_no_import_cycle_between_top_level_packages() -> None:
    imports = tuple(_all_imports())
    graph = _package_graph(imports)
    cycles = [f"{item.path} imports {item.target}" for item in imports if _in_cycle(graph, item)]
    assert not cycles, "imports that close a cycle between top-level packages:\n" + "\n".join(cycles)


def test_the_runtime_never_imports_a_developer_tool() -> None:
    product = _product_tops()
    wrong = [f"{item.path} imports {item.target}" for item in _all_imports()
             if item.source_top in product and item.target_top not in product]
    assert not wrong, "the runtime wheel does not ship these:\n" + "\n".join(wrong)


def test_the_bottom_module_imports_nothing_of_fledge() -> None:
    assert [item.target for item in _all_imports() if item.source_top == "redaction"] == []


def test_product_modules_are_small() -> None:
    tops = _tops()
    sizes = {str(file.relative_to(ROOT)): len(file.read_text().splitlines())
             for top in sorted(_product_tops())
             for file in ([tops[top]] if tops[top].is_file() else sorted(tops[top].rglob("*.py")))}
    assert len(sizes) > 20, "the walk found too few product modules"
    big = [f"{path}: {lines} lines" for path, lines in sizes.items() if lines > MAX_LINES]
    assert not big, f"product modules over {MAX_LINES} lines; split them by topic:\n" + "\n".join(big)


def test_every_program_of_the_fledge_command_exists() -> None:
    from canary.cli import command as cli

    assert {name: _is_module(program.module) for name, program in cli.PROGRAMS.items()} == dict.fromkeys(
        cli.PROGRAMS, True)


# canary/'s rooms from the bottom up: a room imports only rooms below it (and itself).
CANARY_ROOMS = ("core", "cluster", "objects", "engine", "controller", "cli")


def _canary_imports() -> list[tuple[str, str, str]]:
    """(file, its room, imported module) for every import of every module under canary/, lazy ones included."""
    found = []
    for file in sorted((ROOT / "canary").rglob("*.py")):
        rel = file.relative_to(ROOT / "canary")
        room = rel.parts[0] if len(rel.parts) > 1 else ""
        for node in ast.walk(ast.parse(file.read_text(), str(file))):
            if isinstance(node, ast.Import):
                found.extend((str(file.relative_to(ROOT)), room, alias.name) for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module:
                assert not node.level, f"{file}: relative import; import modules by their full name"
                found.extend((str(file.relative_to(ROOT)), room, f"{node.module}.{alias.name}") for alias in node.names)
    return found


def _room_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if parts[0] == "canary" and len(parts) > 1 else None


def test_every_canary_module_lives_in_a_room() -> None:
    loose = sorted(str(path.relative_to(ROOT)) for path in (ROOT / "canary").glob("*.py") if path.name != "__init__.py")
    assert not loose, f"modules directly under canary/; put each in one of {CANARY_ROOMS}: {loose}"
    rooms = {path.name for path in (ROOT / "canary").iterdir() if (path / "__init__.py").is_file()}
    assert rooms == set(CANARY_ROOMS), f"canary/'s rooms changed; order them in CANARY_ROOMS: {sorted(rooms)}"


def test_the_core_imports_only_apis_and_the_standard_library() -> None:
    imports = [(path, module) for path, room, module in _canary_imports() if room == "core"]
    assert len(imports) > 20, "the walk found too few imports in canary/core"
    wrong = [f"{path} imports {module}" for path, module in imports
             if module.split(".")[0] not in {"apis", "__future__", *sys.stdlib_module_names}
             and not module.startswith("canary.core")]
    assert not wrong, "canary/core is pure: apis/ and the standard library only:\n" + "\n".join(wrong)


def test_the_cluster_room_imports_no_other_canary_room() -> None:
    """canary/cluster talks to the API server and knows no release rule: not even canary/core, below it."""
    imports = [(path, module) for path, room, module in _canary_imports() if room == "cluster"]
    assert any(module.startswith("canary.cluster.") for _, module in imports), "the walk found no cluster imports"
    wrong = [f"{path} imports {module}" for path, module in imports
             if module.split(".")[0] == "canary" and _room_of(module) != "cluster"]
    assert not wrong, "canary/cluster imports apis/, never another room of canary/:\n" + "\n".join(wrong)


def test_no_canary_room_imports_a_higher_one() -> None:
    imports = _canary_imports()
    assert any(room == "engine" and _room_of(module) == "core" for _, room, module in imports), "the walk is empty"
    upward = [f"{path} ({room}) imports {module}" for path, room, module in imports
              if room and (target := _room_of(module)) in CANARY_ROOMS
              and CANARY_ROOMS.index(target) > CANARY_ROOMS.index(room)]
    assert not upward, f"imports running up {' < '.join(CANARY_ROOMS)}:\n" + "\n".join(upward)


def _canary_module_graph() -> dict[str, set[str]]:
    """canary/'s modules and the canary/ modules each imports, lazy imports included."""
    graph: dict[str, set[str]] = collections.defaultdict(set)
    for path, _, module in _canary_imports():
        source, target = _module_name(ROOT / path), _resolve(module)
        if target is not None and target.startswith("canary.") and target != source:
            graph[source].add(target)
    return graph


def test_no_import_cycle_between_canary_modules() -> None:
    """The room rule above allows any import inside one room; this one forbids a loop there too."""
    graph = _canary_module_graph()
    assert "canary.objects.diffing" in graph["canary.objects.workloads"], "the walk misses imports inside a room"
    cycles = sorted(f"{source} imports {target}" for source, targets in graph.items() for target in targets
                    if _reaches(graph, target, source))
    assert not cycles, "imports that close a cycle between canary/ modules:\n" + "\n".join(cycles)
