"""A clean install of requirement files, emulated in this environment:
which installed distributions the files bring, and every other
distribution's modules hidden as if not installed. Imports no third-party
package at import time (``packaging`` when called), so a process can hide
modules before anything imports them."""
import importlib.metadata as md
import sys

# What a new virtual environment holds before anything is installed:
# ensurepip seeds pip, and setuptools below Python 3.12 (Paddle imports
# setuptools but declares it only from 3.12 on).
SEEDS = ('pip', 'setuptools') if sys.version_info < (3, 12) else ('pip',)


def canonical(name):
    from packaging.utils import canonicalize_name
    return canonicalize_name(name)


def declared_distributions(*requirement_files):
    """Normalised names of the installed distributions that installing
    ``requirement_files`` into a new environment brings: the seeds, what
    the files list and, recursively, what those require (markers evaluated
    for this interpreter, requested extras followed)."""
    from packaging.requirements import Requirement
    todo = [Requirement(line.split('#')[0].strip())
            for f in requirement_files for line in f.read_text().splitlines()
            if line.split('#')[0].strip() and not line.startswith('-')]
    todo += [Requirement(name) for name in SEEDS]
    seen, declared = set(), set()
    while todo:
        req = todo.pop()
        key = (canonical(req.name), frozenset(req.extras))
        if key in seen:
            continue
        seen.add(key)
        try:
            requires = md.distribution(req.name).requires or []
        except md.PackageNotFoundError:
            continue  # not installed here: nothing can import it either
        declared.add(key[0])
        for text in requires:
            sub = Requirement(text)
            if sub.marker is None or any(
                    sub.marker.evaluate({'extra': e})
                    for e in sorted(req.extras) or ['']):
                todo.append(sub)
    return declared


def owners():
    """``{top-level module: [distributions installing it]}``."""
    return {name: sorted({canonical(d) for d in dists})
            for name, dists in md.packages_distributions().items()}


def hide_undeclared(declared, project='paddlespeech'):
    """Make the top-level modules of every installed distribution outside
    ``declared`` unimportable as if not installed: ``import`` raises
    ModuleNotFoundError and ``importlib.util.find_spec`` gives None, so
    optional imports stay optional. Returns the hidden names."""
    hidden = sorted(
        name for name, dists in owners().items()
        if name not in sys.stdlib_module_names and name != project
        and name not in sys.modules and not set(dists) & set(declared))
    for name in hidden:
        sys.modules[name] = None
    return hidden
