"""``python -m blackbox.replay run=RUN_DIR image=ID [trial=N]``: rebuild a run's adversarial images from
its study.

The code lives in :mod:`blackbox.settings.replay`; this file is only the ``python -m`` entry point.
"""

import sys

from blackbox.settings.replay import main

if __name__ == "__main__":
    sys.exit(main())
