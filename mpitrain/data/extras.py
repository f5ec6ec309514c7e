"""Optional libraries that read some formats, each named by the pip extra that installs it."""
from __future__ import annotations

import importlib
from types import ModuleType

from ..errors import UsageError


def require(module: str, extra: str, what: str, package: str = "") -> ModuleType:
    """Import ``module``, or raise UsageError naming the extra (and the package) that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        package = package or module.split(".")[0]
        raise UsageError(f"reading {what} needs {package}, which is not installed; install it with: "
                         f"pip install 'mpitrain[{extra}]'") from None
