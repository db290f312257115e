"""The ``browser`` fixture: Debian's chromium and its system chromedriver
(never a downloaded one), as tests/install_browser.sh installs them. When
either is missing the test errors (it is not skipped), naming the
command."""
import shutil

import pytest

MISSING = ('chromium or chromedriver is missing (not on PATH): as root run '
           'tests/install_browser.sh (apt-get install chromium '
           'chromium-driver), which tests/run.sh does')


@pytest.fixture
def browser():
    """``(chromedriver, chromium)`` paths."""
    driver, binary = shutil.which('chromedriver'), shutil.which('chromium')
    if not (driver and binary):
        pytest.fail(MISSING, pytrace=False)
    return driver, binary
