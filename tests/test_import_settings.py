"""`import vocable`: the process settings it makes."""

import os
import subprocess
import sys


def test_importing_vocable_caps_onednn_kernel_cache_unless_the_user_set_it():
    """32 kernels keep a long-running process's memory flat; a user's own setting, under either of oneDNN's
    names, is left alone (the newer name would override the older one)."""
    code = "import os, vocable; print(os.environ.get('ONEDNN_PRIMITIVE_CACHE_CAPACITY'))"
    env = {k: v for k, v in os.environ.items() if "PRIMITIVE_CACHE" not in k}
    runs = [subprocess.run([sys.executable, "-c", code], env={**env, **extra}, capture_output=True, text=True,
                           timeout=60).stdout.strip() for extra in
            ({}, {"ONEDNN_PRIMITIVE_CACHE_CAPACITY": "500"}, {"DNNL_PRIMITIVE_CACHE_CAPACITY": "500"})]
    assert runs == ["32", "500", "None"]
