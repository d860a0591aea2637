"""The repository explains itself: every reference to a design document resolves inside it.

Pins down the defect that modules, the README and docs/architecture.md cited a design
file outside the repository (the contracts' upper-case name) that its users cannot see.
Now the design lives in ``docs/design.md``; every ``docs/…`` path named in code or docs
must exist, every section a reference quotes (``docs/design.md "Media leg"``) must be in
that page, and every relative Markdown link must resolve.

Every RFC section the docs cite is the section that says it. Defect: lab 08 cited
RFC 8445 §5.1.1.1 (host candidates) for server-reflexive candidates (§5.1.1.2),
§5.1.2.1 (the priority formula) for the type preferences (§5.1.2.2), §8.1 for nomination
(§8.1.1) and RFC 6062 (TCP allocations: TCP from the TURN server to the peer) for TURN over
TCP, which is RFC 8656 §3.1 (TCP from the client to the server); labs 01 and 02 and the
design cited RFC 5389, obsoleted by RFC 8489, and the architecture its §10.1.1 (forming a
request) for replay, which its §10.1 speaks of (RFC 8489 §9.1).
Now every "RFC NNNN §X" in README.md and docs/ must be in ``SECTIONS`` below with the title
the RFC gives it, no "§X" may stand without its RFC, each claim in ``CLAIMS`` cites the
section that makes it, and an obsoleted RFC is named only beside its successor.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Final

ROOT = Path(__file__).resolve().parents[2]
SKIP = {".venv", ".git", "run", ".mypy_cache", ".ruff_cache", ".pytest_cache", "node_modules"}
SUFFIXES = {".py", ".md", ".toml", ".yml", ".yaml", ".cfg", ".txt", ".nft", ".conf", ".html"}
# Built from parts so that this file does not name what it forbids.
_UP, _SHARED = "\\.\\.", "shared"
OUTSIDE = re.compile(rf"\b{'DES' + 'IGN'}\.md\b|\b{'STY' + 'LE'}\.md\b|{_UP}/{_SHARED}\b|"
                     rf"\b{_SHARED}/seeds\b")
DOC_PATH = re.compile(r"\bdocs/[A-Za-z0-9_./-]*[A-Za-z0-9_]")
SECTION = re.compile(r'docs/design\.md(?:\'s)?,?:? "([^"]+)"')
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def _files() -> list[Path]:
    """The repository's text files, this test's own (its examples) left out."""
    names = {"Makefile", "Dockerfile"}
    return sorted(
        p for p in ROOT.rglob("*")
        if p.is_file() and not SKIP.intersection(p.relative_to(ROOT).parts)
        and (p.suffix in SUFFIXES or p.name in names) and p.name != Path(__file__).name
    )


def test_nothing_points_outside_the_repository() -> None:
    """No reference to the contracts' or the style guide's files outside the repository:
    documents a reader of the repo cannot open."""
    offenders = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for path in _files()
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1)
        if OUTSIDE.search(line)
    ]
    assert offenders == []


def test_every_docs_path_named_in_code_or_docs_exists() -> None:
    missing = []
    for path in _files():
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            for ref in DOC_PATH.findall(line):
                target = ROOT / ref
                if not (target.exists() or any(ROOT.glob(ref))):
                    missing.append(f"{path.relative_to(ROOT)}:{number}: {ref}")
    assert missing == []


def test_every_quoted_design_section_is_in_the_design() -> None:
    """``docs/design.md "Media leg"`` must name words that docs/design.md really has."""
    design = " ".join((ROOT / "docs" / "design.md").read_text().split()).lower()
    missing = []
    for path in _files():
        text = " ".join(path.read_text(errors="replace").split())
        for section in SECTION.findall(text):
            if section.lower() not in design:
                missing.append(f"{path.relative_to(ROOT)}: {section!r}")
    assert missing == []


def test_relative_markdown_links_resolve() -> None:
    missing = []
    for path in _files():
        if path.suffix != ".md":
            continue
        for target in LINK.findall(path.read_text()):
            if "://" in target or target.startswith("mailto:"):
                continue
            if not (path.parent / target).exists():
                missing.append(f"{path.relative_to(ROOT)}: {target}")
    assert missing == []


def test_the_checks_can_fail() -> None:
    assert OUTSIDE.search('see ' + 'DESIGN' + '.md "Ports"')
    assert OUTSIDE.search(".." + "/shared/seeds")
    assert DOC_PATH.findall("(docs/labs/99-none.md).") == ["docs/labs/99-none.md"]
    assert not (ROOT / "docs/labs/99-none.md").exists()
    assert SECTION.findall('latch (docs/design.md "Media leg").') == ["Media leg"]


# --- RFC sections ----------------------------------------------------------------------

#: Every (RFC, section) the docs cite, with the section's title as the RFC's table of
#: contents gives it (https://www.rfc-editor.org/rfc/rfcNNNN). A new citation fails
#: ``test_every_cited_rfc_section_is_known`` until its title is added here. The titles of
#: RFC 8445, 8489 and 8305 were read in the RFC text; those of RFC 7675, 8656, 8839 and 7469
#: in other implementations' citations of the same sections; those of RFC 8829, 8839,
#: 3264 and 5764 in the text of the drafts that became them.
SECTIONS: Final[dict[tuple[int, str], str]] = {
    # RFC 8445, Interactive Connectivity Establishment (ICE)
    (8445, "2.5"): "Lite Implementations",
    (8445, "5.1.1"): "Gathering Candidates",
    (8445, "5.1.1.1"): "Host Candidates",
    (8445, "5.1.1.2"): "Server-Reflexive and Relayed Candidates",
    (8445, "5.1.2.1"): "Recommended Formula",
    (8445, "5.1.2.2"): "Guidelines for Choosing Type and Local Preferences",
    (8445, "6.1.2.3"): "Computing Pair Priority and Ordering Pairs",
    (8445, "7.2.2"): "Forming Credentials",
    (8445, "7.2.4"): "Sending the Request",
    (8445, "7.2.5.3.1"): "Discovering Peer-Reflexive Candidates",
    (8445, "7.3.1.3"): "Learning Peer-Reflexive Candidates",
    (8445, "8.1.1"): "Nominating Pairs",
    # RFC 8489, Session Traversal Utilities for NAT (STUN); obsoletes RFC 5389
    (8489, "5"): "STUN Message Structure",
    (8489, "6.2.1"): "Sending over UDP or DTLS-over-UDP",
    (8489, "9.1"): "Short-Term Credential Mechanism",
    # RFC 3550, RTP: A Transport Protocol for Real-Time Applications
    (3550, "5.1"): "RTP Fixed Header Fields",
    (3550, "6.4.1"): "SR: Sender Report RTCP Packet",
    # RFC 7675, STUN Usage for Consent Freshness
    (7675, "5.1"): "Expiration of Consent",
    # RFC 8656, Traversal Using Relays around NAT (TURN); obsoletes RFC 5766
    (8656, "3.1"): "Transports",
    # RFC 8839, SDP Offer/Answer Procedures for ICE
    (8839, "5.1"): '"candidate" Attribute',
    # RFC 8829, JavaScript Session Establishment Protocol (JSEP)
    (8829, "5.2"): "Constructing an Offer",
    (8829, "5.3"): "Generating an Answer",
    (8839, "5.3"): '"ice-lite" and "ice-mismatch" Attributes',
    # RFC 8842, SDP Offer/Answer Considerations for DTLS and TLS
    (8842, "5.1"): "General",
    # RFC 3264, An Offer/Answer Model with SDP
    (3264, "6.1"): "Unicast Streams",
    # RFC 8827, WebRTC Security Architecture
    (8827, "6.5"): "Communications Security",
    # RFC 5764, DTLS Extension to Establish Keys for SRTP
    (5764, "4.2"): "Key Derivation",
    # RFC 4585, Extended RTP Profile for RTCP-Based Feedback (RTP/AVPF)
    (4585, "6.1"): "Common Packet Format for Feedback Messages",
    # RFC 5104, Codec Control Messages in the RTP Audio-Visual Profile with Feedback
    (5104, "4.3.1"): "Full Intra Request (FIR)",
    # RFC 8305, Happy Eyeballs Version 2
    (8305, "5"): "Connection Attempts",
    # RFC 7469, Public Key Pinning Extension for HTTP
    (7469, "2.4"): "Semantics of Pins",
    (7469, "4.3"): "Backup Pins",
}

#: What a doc says a section is about, and the section that says it: the first citation
#: after the phrase (within ``CLAIM_REACH`` characters) must be this one.
CLAIMS: Final[tuple[tuple[str, int, str], ...]] = (
    ("host candidate (", 8445, "5.1.1.1"),
    ("server-reflexive candidate (", 8445, "5.1.1.2"),
    ("type preferences", 8445, "5.1.2.2"),
    ("ICE-lite agent (", 8445, "2.5"),
    ("connectivity check (", 8445, "7.2.2"),
    ("peer-reflexive candidate (", 8445, "7.3.1.3"),
    ("nomination (", 8445, "8.1.1"),
    ("TURN over TCP (", 8656, "3.1"),
    ("TURN over TLS on 443 (", 8656, "3.1"),
    ("a TURN allocation made over TCP (", 8656, "3.1"),
    ("is a replay (", 8489, "9.1"),
)
CLAIM_REACH: Final = 40

#: Obsoleted RFC -> the RFC that obsoletes it. The old number may appear only with the new
#: one close by ("RFC 5389/8489"), where the history is the point.
OBSOLETED: Final[dict[int, int]] = {5389: 8489, 5245: 8445, 5766: 8656, 6555: 8305}
OBSOLETE_REACH: Final = 40

_SECTION = r"§[A-Z]?\d+(?:\.\d+)*"
CITATION = re.compile(rf"RFC (\d{{3,5}})(?:'s)?((?:(?:,| and|, and)? {_SECTION})+)")
SECTION_SIGN = re.compile(_SECTION)
FIRST_CITATION = re.compile(rf"RFC (\d{{3,5}})(?:'s)? ?({_SECTION})?|({_SECTION})")
RFC_NUMBER = re.compile(r"RFC (\d{3,5})\b")


def _doc_texts() -> dict[str, str]:
    """README.md and docs/, each with its whitespace runs folded to one space."""
    paths = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    return {str(p.relative_to(ROOT)): " ".join(p.read_text().split()) for p in paths}


def cited_sections(text: str) -> list[tuple[int, str]]:
    """Every (RFC, section) in ``text``: "RFC 7469 §2.4, §4.3" is two."""
    return [(int(m[1]), s[1:]) for m in CITATION.finditer(text)
            for s in SECTION_SIGN.findall(m[2])]


def bare_sections(text: str) -> list[str]:
    """Each "§X" that no "RFC NNNN" names (a reader cannot tell which RFC it is)."""
    covered = [m.span(2) for m in CITATION.finditer(text)]
    return [m[0] for m in SECTION_SIGN.finditer(text)
            if not any(a <= m.start() < b for a, b in covered)]


def claim_errors(text: str, phrase: str, rfc: int, section: str) -> tuple[int, list[str]]:
    """How often ``phrase`` is followed by a citation, and each one that is not RFC ``rfc``
    §``section`` (what it cites instead)."""
    cited, wrong = 0, []
    for m in re.finditer(re.escape(phrase), text, re.IGNORECASE):
        after = FIRST_CITATION.search(text, m.end(), m.end() + CLAIM_REACH)
        if after is None:
            continue
        cited += 1
        number = int(after[1]) if after[1] else None
        found = (after[2] or after[3] or "")[1:]
        if (number, found) != (rfc, section):
            wrong.append(f"{phrase!r} cites {after[0]!r}, not RFC {rfc} §{section}")
    return cited, wrong


def obsolete_mentions(text: str) -> list[str]:
    """Each mention of an obsoleted RFC with no mention of its successor close by."""
    found = []
    for m in RFC_NUMBER.finditer(text):
        successor = OBSOLETED.get(int(m[1]))
        if successor is None:
            continue
        near = text[max(0, m.start() - OBSOLETE_REACH):m.end() + OBSOLETE_REACH]
        if str(successor) not in near:
            found.append(f"{near!r}: RFC {m[1]} is obsoleted by RFC {successor}")
    return found


def test_every_cited_rfc_section_is_known() -> None:
    """Each "RFC NNNN §X" in README.md and docs/ is in ``SECTIONS``, with its title."""
    unknown = [f"{name}: RFC {rfc} §{section}"
               for name, text in _doc_texts().items()
               for rfc, section in cited_sections(text) if (rfc, section) not in SECTIONS]
    assert unknown == []


def test_no_section_without_its_rfc() -> None:
    """A bare "§5.1.1.1" in a table under "RFC 8445 and friends" could be any friend's."""
    bare = [f"{name}: {s}" for name, text in _doc_texts().items() for s in bare_sections(text)]
    assert bare == []


def test_each_claim_cites_the_section_that_makes_it() -> None:
    """Host candidates are RFC 8445 §5.1.1.1, server-reflexive ones §5.1.1.2, the type
    preferences §5.1.2.2; TURN over TCP or TLS is RFC 8656 §3.1, not RFC 6062."""
    texts = _doc_texts()
    wrong: list[str] = []
    uncited = []
    for phrase, rfc, section in CLAIMS:
        total = 0
        for name, text in texts.items():
            cited, errors = claim_errors(text, phrase, rfc, section)
            total += cited
            wrong += [f"{name}: {e}" for e in errors]
        if total == 0:
            uncited.append(phrase)
    assert wrong == []
    assert uncited == [], "each claim is made, with a citation, somewhere in the docs"


def test_an_obsoleted_rfc_is_named_beside_its_successor() -> None:
    """The media node speaks RFC 8489; RFC 5389 alone would send a reader to the old text."""
    stale = [f"{name}: {m}" for name, text in _doc_texts().items()
             for m in obsolete_mentions(text)]
    assert stale == []


def test_the_section_table_is_well_formed() -> None:
    for (rfc, section), title in SECTIONS.items():
        assert 1000 <= rfc <= 99999 and SECTION_SIGN.fullmatch(f"§{section}"), (rfc, section)
        assert title.strip() == title and title, (rfc, section)
    for _, rfc, section in CLAIMS:
        assert (rfc, section) in SECTIONS


def test_the_rfc_checks_can_fail() -> None:
    """The checks catch what the docs said before: run on those very lines."""
    assert cited_sections("pins (RFC 7469 §2.4, §4.3).") == [(7469, "2.4"), (7469, "4.3")]
    assert cited_sections("RFC 5389 §10.1.1 has") == [(5389, "10.1.1")]
    assert (5389, "10.1.1") not in SECTIONS
    row = "| server-reflexive candidate (§5.1.1.1) | the `mapped` address |"
    assert bare_sections(row) == ["§5.1.1.1"]
    assert claim_errors(row, "server-reflexive candidate (", 8445, "5.1.1.2")[1] != []
    assert claim_errors("| TURN over TCP (RFC 6062) |", "TURN over TCP (", 8656, "3.1")[1]
    assert claim_errors("made over TCP (RFC 6062; RFC 8656 §3.1) still",
                        "a TURN allocation made over TCP (", 8656, "3.1") == (0, [])
    assert claim_errors("a TURN allocation made over TCP (RFC 6062; RFC 8656 §3.1)",
                        "a TURN allocation made over TCP (", 8656, "3.1")[1]
    assert claim_errors("| nomination (RFC 8445 §8.1) |", "nomination (", 8445, "8.1.1")[1]
    assert claim_errors("| nomination (RFC 8445 §8.1.1) |", "nomination (", 8445, "8.1.1") \
        == (1, [])
    assert obsolete_mentions("The media node speaks plain RFC 5389, so any STUN client")
    assert obsolete_mentions("STUN: RFC 5389/8489 via aioice.stun") == []
