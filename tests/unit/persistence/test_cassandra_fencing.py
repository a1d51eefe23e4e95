"""Pure parts of Cassandra's ownership fencing."""

from __future__ import annotations

from shoal.persistence._cassandra_fencing import CLAIM_BUCKETS, claim_bucket


def test_claim_buckets_are_a_stable_hash() -> None:
    assert claim_bucket("account|alice") == 46  # the same in every process and Python version
    assert claim_bucket("") == 0
    assert {claim_bucket(f"id-{i}") for i in range(1000)} == set(range(CLAIM_BUCKETS))
