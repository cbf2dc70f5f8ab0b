"""How every binary of the package starts: absl's ``app.run``, and a --help that lists the
binary's own flags.

absl's --help prints ``__main__``'s docstring and the key flags of the module named by
``sys.argv[0]``. A console script's ``__main__`` is pip's wrapper, which defines no
flags, so ``alexnet-train --help`` would list none ("Try --helpfull"). `run` registers
the binary module's flags as key flags of the wrapper and lends it the module's
docstring when it has none, so that ``alexnet-train --help``, ``python -m alexnet_tf.cli.train --help``
and ``python -m alexnet_tf.train --help`` print the same thing.
"""

from __future__ import annotations

import sys
from typing import Callable

from absl import app, flags


def run(main: Callable, module_name: str, *, flags_parser: Callable | None = None) -> None:
    """``app.run(main)`` for the binary defined in module ``module_name``.

    Args:
      main: the binary's ``main(argv)``.
      module_name: the module that defines the binary's flags (its ``__name__``).
      flags_parser: absl's ``flags_parser`` argument; default: absl's own parser.
    """
    module = sys.modules[module_name]
    main_module = sys.modules["__main__"]
    if main_module is not module:
        for flag in flags.FLAGS.get_key_flags_for_module(module_name):
            flags.FLAGS.register_key_flag_for_module(sys.argv[0], flag)
        if not main_module.__doc__:  # a script of its own (tools/) keeps its own text
            main_module.__doc__ = module.__doc__
    if flags_parser is None:
        app.run(main)
    else:
        app.run(main, flags_parser=flags_parser)
