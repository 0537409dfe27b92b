from __future__ import annotations

import pytest

from tests.helpers import Consortium


@pytest.fixture
def consortium() -> Consortium:
    return Consortium.make()
