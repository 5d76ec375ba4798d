import subprocess
import sys

import pytest


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_keep_freed_memory_applies_once_and_tensors_still_work():
    # in a child process: the setting is process-wide and must not leak into the test run
    code = (
        "import torch; from stylelift.runtime import keep_freed_memory as k\n"
        "a, b = k(), k()\n"
        "x = torch.ones(64, 1024, 1024); y = x * 2; del x; z = torch.zeros(64, 1024, 1024)\n"
        "print(a, b, float(y.sum()), float(z.sum()))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["True", "True", str(2.0 * 64 * 1024 * 1024), "0.0"]
