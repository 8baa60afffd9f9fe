"""The app factory: creating the app (and importing the dataset rules) never imports torch."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_create_app_does_not_import_torch(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from api.main import create_app\n"
        "from store.settings import Settings\n"
        f"app = create_app(Settings(data_dir={str(tmp_path)!r}))\n"
        "import quaff_core.data.jsonl, quaff_core.options.base_models, store.catalog\n"
        "store.catalog.base_models(app.state.settings)\n"
        "heavy = {'torch', 'transformers', 'peft'}\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in heavy)\n"
        "print(','.join(heavy) or 'clean')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "clean"
