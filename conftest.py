"""Repository-wide pytest setup.

* Quick mode: ``MVLIB_QUICK=1`` unless the caller set it (``MVLIB_QUICK=0 python -m pytest`` runs the
  notebooks in full). Notebook kernels started by nbval inherit it, so notebooks shrink steps, epochs and
  example counts -- never image sizes, variants or class counts (see ``mvlib.notebook.quick_mode``).
* matplotlib's font cache is built before any notebook kernel starts: on a fresh machine its one-time
  "building the font cache" notice would otherwise land in a compared cell as stderr.
* nbval's sanitize file is given relative to the repository root in ``pyproject.toml``; resolve it there
  so pytest also works when started from another directory.
"""

import os
from pathlib import Path

os.environ.setdefault("MVLIB_QUICK", "1")

try:  # build matplotlib's font cache here, not in a notebook kernel where its notice would be a cell output
    import matplotlib.font_manager  # noqa: F401
except ImportError:
    pass


def pytest_configure(config):
    path = getattr(config.option, "nbval_sanitize_with", None)
    if path and not Path(path).is_absolute() and not Path(path).exists():
        candidate = Path(config.rootpath) / path
        if candidate.exists():
            config.option.nbval_sanitize_with = str(candidate)
