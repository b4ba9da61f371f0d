"""What `bms up` writes into var/demo.env as the portal's URL."""

from __future__ import annotations

import pytest

from portal.cli import _client_url


@pytest.mark.parametrize(
    ("bind", "url"),
    [
        ("0.0.0.0:8000", "http://127.0.0.1:8000"),  # a wildcard is not an address to call
        ("[::]:8080", "http://127.0.0.1:8080"),
        ("127.0.0.1:8000", "http://127.0.0.1:8000"),
        ("10.250.0.254:9000", "http://10.250.0.254:9000"),
    ],
)
def test_client_url(bind: str, url: str) -> None:
    assert _client_url(bind) == url
