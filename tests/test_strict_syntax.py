"""Strict address and header-block syntax: hostile values never match a patient loosely."""
from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.addresses import normalize
from gateway.auth.domains import aligned, org_domain
from gateway.auth.strict import envelope_error, header_block_error, plain_address


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=80), st.from_regex(
    r"[a-zA-Z0-9.+\"()\uff41-\uff5a]{1,10}@[a-z0-9\uff41-\uff5a\u0430-\u044f\u00e0-\u00ff.-]{1,15}",
    fullmatch=True)))
def test_envelope_check_never_crashes_and_plain_means_unchanged_by_normalisation(text):
    reply = envelope_error(f"FROM:<{text}>")
    assert reply is None or reply.startswith("553 5.1.7")
    if text and reply is None:
        # a plain address is its own normal form, up to case and IDNA A/U-labels
        local, _, domain = text.rpartition("@")
        norm = normalize(text)
        assert norm is not None and norm.rpartition("@")[0] == local.lower()


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_header_block_check_never_crashes(raw):
    assert header_block_error(raw) in (None, "header-leading-whitespace",
                                       "header-field-syntax", "header-from-count")


def test_full_width_and_look_alike_domains_are_not_plain():
    assert plain_address("ana@example.com") and plain_address("ana@xn--bcher-kva.de")
    assert plain_address("ana@b\u00fccher.de")  # a strict U-label
    for hostile in ("ana@\uff45xample.com", "ana\uff20example.com", "ana@example.com.",
                    "ana@exa mple.com", '"ana"@example.com', "ana@[10.0.0.1]",
                    "ana@-example.com", "\uff41na@example.com", "ana@example",
                    "ana@ex\u200bample.com"):
        assert not plain_address(hostile), hostile


def test_alignment_uses_the_public_suffix_list():
    assert org_domain("mail.example.co.uk") == "example.co.uk"
    assert aligned("mail.example.com", "example.com")
    assert not aligned("mail.example.com", "example.com", "s")
    assert not aligned("example.co.uk", "other.co.uk")  # same public suffix, other owners
    assert not aligned("evil.test", "example.com")
    assert not aligned("ex\u0430mple.com", "example.com")  # Cyrillic a
