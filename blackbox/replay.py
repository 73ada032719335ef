"""``python -m blackbox.replay RUN_DIR``: rebuild a run's adversarial images from its study.

The code lives in :mod:`blackbox.experiment.replay`; this file is only the ``python -m`` entry point.
"""

import sys

from blackbox.experiment.replay import main

if __name__ == "__main__":
    sys.exit(main())
