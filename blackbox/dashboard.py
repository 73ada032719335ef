"""``python -m blackbox.dashboard [run=RUN_DIR] [port=N]``: optuna-dashboard on a run's study.

The code lives in :mod:`blackbox.settings.dashboard`; this file is only the ``python -m`` entry point.
"""

import sys

from blackbox.settings.dashboard import main

if __name__ == "__main__":
    sys.exit(main())
