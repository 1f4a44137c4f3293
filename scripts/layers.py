"""Print proxy/'s import graph, layer by layer, marking every import that breaks a layer.

    python scripts/layers.py                 # this checkout
    python scripts/layers.py ../old-checkout # another tree (e.g. `git worktree add` of an
                                             # older commit), judged by THIS pyproject's layers

One line per top-level module of proxy/ (a package such as oidc/ counts as one), in the
order of the layers contract in pyproject.toml ([tool.importlinter], docs/architecture.md),
then the proxy modules it imports. An import marked `!` goes up a layer or sideways between
independent siblings: what `lint-imports` (in `make lint`) refuses. Exit status 1 if any.
"""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

import grimp

HERE = Path(__file__).resolve().parents[1]


def layers() -> list[tuple[list[str], bool]]:
    """Each layer's modules, top first, and whether its siblings must be independent."""
    config = tomllib.loads((HERE / "pyproject.toml").read_text())["tool"]["importlinter"]
    contract = next(c for c in config["contracts"] if c["type"] == "layers")
    out = []
    for layer in contract["layers"]:
        independent = "|" in layer
        out.append(([m.strip() for m in layer.replace("|", ":").split(":")], independent))
    return out


def main(root: Path) -> int:
    sys.path.insert(0, str(root))
    graph = grimp.build_graph("proxy", cache_dir=None)
    order = layers()
    where = {m: (i, independent) for i, (mods, independent) in enumerate(order) for m in mods}
    tops = sorted({m.split(".")[1] for m in graph.modules if m.count(".") >= 1})
    imports: dict[str, set[str]] = {t: set() for t in tops}
    for module in graph.modules:
        if module.count(".") < 1:
            continue
        top = module.split(".")[1]
        for target in graph.find_modules_directly_imported_by(module):
            if target.startswith("proxy.") and target.split(".")[1] != top:
                imports[top].add(target.split(".")[1])
    broken = 0
    ranked = sorted(tops, key=lambda t: (where.get(t, (len(order), False))[0], t))
    last = None
    for top in ranked:
        layer, independent = where.get(top, (len(order), False))
        if layer != last:
            print(f"-- layer {layer + 1}" if layer < len(order) else "-- in no layer")
            last = layer
        marks = []
        for target in sorted(imports[top], key=lambda t: (where.get(t, (len(order),))[0], t)):
            t_layer = where.get(target, (len(order), False))[0]
            bad = t_layer < layer or (t_layer == layer and independent)
            broken += bad
            marks.append(("!" if bad else "") + target)
        print(f"   {top:<20} -> {' '.join(marks) or '-'}")
    print(f"{broken} import(s) against the layers")
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]).resolve() if len(sys.argv) > 1 else HERE))
