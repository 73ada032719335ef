"""``python -m blackbox.robustness_report RUN_DIR``: rebuild a robustness report from its results.csv.

The code lives in :mod:`blackbox.evaluate.robustness_report`; this file is only the ``python -m`` entry point.
"""

import sys

from blackbox.evaluate.robustness_report import main

if __name__ == "__main__":
    sys.exit(main())
