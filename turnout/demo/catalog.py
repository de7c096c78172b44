"""What the sample app serves: the emoji, their votes and the gRPC method names.

Messages are JSON bytes (generic handlers, no generated stubs): ``ListAll`` answers the
whole list, ``Vote<Name>`` takes no input and answers ``{}``, ``Results`` answers the tally.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

NAMESPACE = "emojivoto"
EMOJI_SERVICE = "emojivoto.v1.EmojiService"
VOTING_SERVICE = "emojivoto.v1.VotingService"
GRPC_PORT = 8080
"""The Services' port (`examples/emojivoto/mesh/10-services.yaml`)."""
FAILING_VOTE = "doughnut"
"""Votes for this one always fail (UNKNOWN), as in Linkerd's emojivoto."""


@dataclass(frozen=True, slots=True)
class Emoji:
    shortcode: str
    """``doughnut``: the vote method is ``VoteDoughnut``."""
    unicode: str


EMOJI: tuple[Emoji, ...] = (
    Emoji("doughnut", "\U0001f369"),
    Emoji("pizza", "\U0001f355"),
    Emoji("joy", "\U0001f602"),
    Emoji("sunglasses", "\U0001f60e"),
    Emoji("rocket", "\U0001f680"),
    Emoji("taco", "\U0001f32e"),
    Emoji("unicorn", "\U0001f984"),
    Emoji("ghost", "\U0001f47b"),
    Emoji("cat", "\U0001f431"),
    Emoji("dog", "\U0001f436"),
)
BY_SHORTCODE = {e.shortcode: e for e in EMOJI}


def vote_method(shortcode: str) -> str:
    """``doughnut`` -> ``VoteDoughnut``."""
    return "Vote" + shortcode.capitalize()


def method_path(service: str, method: str) -> str:
    return f"/{service}/{method}"


def encode(data: object) -> bytes:
    return json.dumps(data, separators=(",", ":")).encode()


def decode(raw: bytes) -> object:
    return json.loads(raw) if raw else None
