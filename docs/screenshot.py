"""Re-take ``docs/dashboard-trial.png``: a 640 px run of the bundled cat, its best trial in optuna-dashboard.

    python -m docs.screenshot        # needs chromium, chromium-driver (Debian) and selenium

The same headless Chromium set-up as the browser test (``tests/browser.py``).
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
from pathlib import Path

import optuna
from optuna.artifacts import get_all_artifact_meta
from PIL import Image

from tests.browser import headless_chromium, loaded_images
from tests.services import CHROMEDRIVER, CHROMIUM

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "docs" / "dashboard-trial.png"


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        run_dir = Path(folder) / "run"
        subprocess.run(
            [sys.executable, "-m", "blackbox", "dataset.names=[chelsea]", "budget=20", "progress=false",
             f"hydra.run.dir={run_dir}"],
            cwd=REPO, check=True, stdout=subprocess.DEVNULL,
        )  # fmt: skip
        storage = optuna.storages.JournalStorage(
            optuna.storages.journal.JournalFileBackend(str(run_dir / "optuna.journal"))
        )
        (summary,) = optuna.get_all_study_summaries(storage)
        study = optuna.load_study(study_name=summary.study_name, storage=storage)
        trial = max(
            (t for t in study.trials if get_all_artifact_meta(t, storage=storage)), key=lambda t: t.number
        )
        server = subprocess.Popen(
            [sys.executable, "-m", "blackbox.dashboard", f"run={run_dir}", "port=0"],
            cwd=REPO, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            assert server.stdout is not None
            base = re.search(r"http://127\.0\.0\.1:\d+", server.stdout.readline()).group(0)  # type: ignore[union-attr]
            with headless_chromium(CHROMIUM, CHROMEDRIVER) as browser:
                browser.set_window_size(1300, 900)
                browser.get(f"{base}/dashboard/studies/{study._study_id}/trials?numbers={trial.number}")
                images = loaded_images(browser, count=2)
                browser.execute_script("arguments[0].scrollIntoView({block: 'end'})", images[0])
                shot = Path(folder) / "shot.png"
                browser.save_screenshot(str(shot))
        finally:
            server.terminate()
            server.wait(timeout=10)
        # A palette PNG: a few hundred KB less, and a screenshot of a web page loses nothing that matters.
        Image.open(shot).convert("RGB").quantize(colors=128).save(OUT, optimize=True)
    print(f"{OUT} ({OUT.stat().st_size // 1024} KB), trial {trial.number}")


if __name__ == "__main__":
    main()
