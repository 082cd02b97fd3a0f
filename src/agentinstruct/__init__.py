"""agentinstruct: Generative Teaching (AgentInstruct) as a toolkit.

Stages import as ``agentinstruct.generate``, ``agentinstruct.train`` and
``agentinstruct.evaluate``; the shared core (LLM layer, records, recipes) lives here.
"""

__version__ = "0.1.0"

STAGES = ("generate", "train", "evaluate")


def _map_stage_folders() -> None:
    """Make the repository-root stage folders importable in an editable install.

    The stage folders carry no ``__init__.py`` on purpose (a root ``evaluate/__init__.py``
    would shadow the Hugging Face ``evaluate`` package). A regular install copies them into
    this package and Python imports them as namespace sub-packages; setuptools' editable
    finder cannot hand out a package without ``__init__.py``, so register them here.
    """
    import importlib.machinery
    import importlib.util
    import sys
    from pathlib import Path

    from agentinstruct.resources import checkout_root

    here = Path(__file__).resolve().parent
    repo = checkout_root(here)
    if repo is None:  # a wheel: the stages were copied into the package
        return
    for stage in STAGES:
        name = f"{__name__}.{stage}"
        folder = repo / stage
        if (here / stage).is_dir() or name in sys.modules or not folder.is_dir():
            continue
        spec = importlib.machinery.ModuleSpec(name, None, is_package=True)
        spec.submodule_search_locations = [str(folder)]
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        globals()[stage] = module


_map_stage_folders()
