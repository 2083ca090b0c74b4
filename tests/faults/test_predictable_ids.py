"""The id-prediction attack: rebuild a Mersenne Twister from record ids seen in
OK replies, predict the next ids, and pre-register them at the collector.

A local user who could predict the ids of other users' records could store
records under them first, and the collector would drop the real ones as
duplicates while the daemon journals them delivered. The attacker below
works (it predicts a `random.Random` id source exactly); against the daemon
it must not.
"""

from __future__ import annotations

import random

from daemon_harness import DaemonHarness
from processes import report

from telemd.frame import encode_frame
from telemd.record import Record

MT_STATE_WORDS = 624
# 128-bit ids give four 32-bit outputs each: 156 ids are the whole state.
IDS_NEEDED = MT_STATE_WORDS // 4
MASK32 = 0xFFFFFFFF


def untemper(value: int) -> int:
    """Invert the Mersenne Twister's output tempering: one state word back."""
    value ^= value >> 18
    value ^= (value << 15) & 0xEFC60000
    result = value
    for _ in range(4):  # y ^= (y << 7) & 0x9D2C5680, undone 7 bits at a time
        result = value ^ ((result << 7) & 0x9D2C5680)
    value = result & MASK32
    result = value
    for _ in range(2):  # y ^= y >> 11, undone 11 bits at a time
        result = value ^ (result >> 11)
    return result & MASK32


def predict_next(ids: list[str], count: int) -> list[str]:
    """The `count` ids after `ids`, if they came from getrandbits(128)."""
    words = []
    for record_id in ids[-IDS_NEEDED:]:
        number = int(record_id, 16)
        # getrandbits fills a big number from its least significant word up.
        words += [(number >> (32 * i)) & MASK32 for i in range(4)]
    clone = random.Random()
    clone.setstate((3, (*[untemper(word) for word in words], MT_STATE_WORDS), None))
    return [f"{clone.getrandbits(128):032x}" for _ in range(count)]


def test_the_attacker_predicts_a_mersenne_twister_id_source() -> None:
    source = random.Random().getrandbits
    seen = [f"{source(128):032x}" for _ in range(IDS_NEEDED)]
    following = [f"{source(128):032x}" for _ in range(10)]
    assert predict_next(seen, 10) == following


def test_record_ids_from_ok_replies_do_not_predict_the_next_ones(harness: DaemonHarness) -> None:
    harness.write_config(uid_records_per_minute=-1, log_level="info")
    harness.start()
    frames = [
        encode_frame(Record("org.example/faults/ids", 1, f"n{n}")) for n in range(IDS_NEEDED + 100)
    ]
    with harness.client() as client:
        client.write_frames(frames)
        ids = [client.read_reply() for _ in frames]
    seen, following = ids[:IDS_NEEDED], ids[IDS_NEEDED:]
    predicted = predict_next(seen, len(following))
    hits = sum(guess == actual for guess, actual in zip(predicted, following, strict=True))
    assert harness.stop() == 0
    report("ids/mt-prediction", ids_seen=len(seen), predicted=len(following), hits=hits)
    assert len(set(ids)) == len(ids)
    assert hits == 0
