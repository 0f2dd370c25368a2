"""Two rules of the code's structure, checked on its syntax trees (fast: nothing is imported or run):

1. importing the platform reads the settings in one place only, ``tv_platform/location.py``: no other module calls
   ``get_settings()`` where Python evaluates it at import time (module level, class bodies, decorators, default
   arguments); inside a function it runs when it is called, which is fine;
2. engines (``tv_platform/engines/``) never import the stack (``tv_platform/stack/``): they are clients of services,
   the stack is the services' lifecycle; what both need lives in neutral modules (``tv_platform/processes.py``).
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "tv_platform"
SETTINGS_READ_AT_IMPORT = {"location.py"}  # the one place (settings.py defines get_settings)


def _modules(under: Path) -> list[Path]:
    return sorted(p for p in under.rglob("*.py") if "jvm" not in p.parts)


def _name(path: Path) -> str:
    return path.relative_to(PACKAGE.parent).as_posix()


def import_time_calls(tree: ast.AST, function: str) -> list[int]:
    """Line numbers of calls to ``function`` (a name or an attribute of that name) that run when the module is
    imported: everything but the bodies of functions and lambdas (their decorators and defaults do run)."""
    lines: list[int] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.Call):
            target = node.func
            if (isinstance(target, ast.Name) and target.id == function) or \
                    (isinstance(target, ast.Attribute) and target.attr == function):
                lines.append(node.lineno)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for child in [*node.decorator_list, *node.args.defaults, *node.args.kw_defaults]:
                if child is not None:
                    visit(child)
            return
        if isinstance(node, ast.Lambda):
            for child in [*node.args.defaults, *node.args.kw_defaults]:
                if child is not None:
                    visit(child)
            return
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return lines


def imported_modules(tree: ast.AST, module: str) -> list[str]:
    """Every module an ``import`` anywhere in ``tree`` (also inside functions) names, absolute; ``module`` is the
    dotted name of the file, to resolve relative imports."""
    out: list[str] = []
    package = module.rsplit(".", 1)[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[:len(parts) - node.level + 1] + ([base] if base else []))
            out.append(base)
            out += [f"{base}.{alias.name}" for alias in node.names]  # `from tv_platform import stack`
    return out


def test_rule_finds_import_time_calls_and_ignores_runtime_ones():
    tree = ast.parse(
        "x = get_settings().a\n"                          # 1: module level
        "class C:\n    y: int = get_settings().b\n"       # 3: class body
        "@deco(get_settings().c)\n"                       # 4: decorator
        "def f(z=S.get_settings()):\n"                    # 5: default argument
        "    return get_settings()\n"                     # runs when called
        "g = lambda: get_settings()\n")                   # runs when called
    assert import_time_calls(tree, "get_settings") == [1, 3, 4, 5]
    imports = imported_modules(ast.parse("def f():\n    from ..stack.base import X\nfrom tv_platform import stack\n"),
                               "tv_platform.engines.superset")
    assert "tv_platform.stack.base" in imports and "tv_platform.stack" in imports


def test_settings_are_read_at_import_time_only_in_location():
    offenders = []
    for path in _modules(PACKAGE):
        if path.relative_to(PACKAGE).as_posix() in SETTINGS_READ_AT_IMPORT:
            continue
        for line in import_time_calls(ast.parse(path.read_text(), str(path)), "get_settings"):
            offenders.append(f"{_name(path)}:{line}")
    assert not offenders, ("get_settings() runs at import time here; take the value from tv_platform.location "
                           f"(or read it when the code runs): {offenders}")
    assert import_time_calls(ast.parse((PACKAGE / "location.py").read_text()), "get_settings")


def test_engines_never_import_the_stack():
    offenders = []
    for path in _modules(PACKAGE / "engines"):
        module = _name(path)[:-3].replace("/", ".")
        for name in imported_modules(ast.parse(path.read_text(), str(path)), module):
            if name == "tv_platform.stack" or name.startswith("tv_platform.stack."):
                offenders.append(f"{_name(path)}: {name}")
    assert not offenders, f"engines import the stack (move what is shared to a neutral module): {offenders}"
