"""How options are declared, checked and read from YAML: the layer every component's options build on.

Components (networks, losses, datasets, degradations) declare their options with :func:`option` and
check them with :func:`require`; :mod:`esrforge.options` assembles them into the schemas of whole
config files.
"""

from .declare import InputPath, MustExist, option, require, require_folder_name
from .errors import OptionError, OptionValueError

__all__ = [
    "InputPath",
    "MustExist",
    "OptionError",
    "OptionValueError",
    "option",
    "require",
    "require_folder_name",
]
