"""``python -m blackbox.report RUN_DIR``: rebuild a comparison's report from its results.csv.

The code lives in :mod:`blackbox.evaluate.report`; this file is only the ``python -m`` entry point.
"""

import sys

from blackbox.evaluate.report import main

if __name__ == "__main__":
    sys.exit(main())
