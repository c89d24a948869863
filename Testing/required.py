"""Test inputs that come from system packages (Debian invesalius-examples, Orthanc, dicom3tools, dcmqi): a
missing one fails the test under CI=true (``.ci/run`` installs them) and skips it elsewhere - never a silent
pass."""
import os

import pytest


def missing(what: str, install: str, module_level: bool = False) -> None:
    """Fail (CI=true) or skip because ``what`` is not installed; ``install`` says how to get it."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{what} is required under CI=true ({install})", pytrace=False)
    pytest.skip(f"{what} not installed ({install})", allow_module_level=module_level)
