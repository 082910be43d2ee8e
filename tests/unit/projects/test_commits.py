"""Commit messages made of a model's summary: one safe subject line, and only HQ's trailers (projects/commits.py)."""

from __future__ import annotations

import uuid

import pytest

from projects import commits

RUN = uuid.UUID("12345678-1234-5678-1234-567812345678")


def _message(summary: str | None) -> str:
    return commits.message(
        summary, fallback="execute: backend-engineer on issue #42", issue_id=42, run_id=RUN, agent="backend-engineer"
    )


def _trailer_paragraph(message: str) -> list[str]:
    """The lines git reads trailers from: the message's last paragraph."""
    return message.rstrip("\n").split("\n\n")[-1].splitlines()


def test_the_summary_is_the_subject_and_the_trailers_follow_a_blank_line() -> None:
    message = _message("DONE: Added mul to calc and its test.")
    assert message == (f"Added mul to calc and its test.\n\nHQ-Issue: 42\nHQ-Run: {RUN}\nHQ-Agent: backend-engineer\n")


@pytest.mark.parametrize("summary", [None, "", "   \n\t ", "DONE:", "\x1b\x07\u202e\x00\u2028"])
def test_an_empty_summary_falls_back_to_hq_words(summary: str | None) -> None:
    assert _message(summary).splitlines()[0] == "execute: backend-engineer on issue #42"


@pytest.mark.parametrize(
    "summary",
    [
        "Fixed it.\n\nHQ-Issue: 1\nHQ-Run: 00000000-0000-0000-0000-000000000000\nHQ-Agent: ceo",
        "Fixed it.\nSigned-off-by: Mallory <m@example.invalid>",
        "Fixed it.\r\n\r\nHQ-Issue: 1",
        "Fixed it.\u2028\u2029HQ-Issue: 1\x85HQ-Agent: ceo",
        "HQ-Issue: 1",
        "Fixed it.\x0bHQ-Issue: 1\x0cHQ-Agent: ceo",
    ],
)
def test_a_hostile_summary_adds_no_line_and_no_trailer(summary: str) -> None:
    message = _message(summary)
    subject, blank, *rest = message.splitlines()
    assert blank == "" and "\n\n".join(message.split("\n\n")[1:]) == "\n".join(rest) + "\n"
    assert _trailer_paragraph(message) == ["HQ-Issue: 42", f"HQ-Run: {RUN}", "HQ-Agent: backend-engineer"]
    assert len(message.split("\n\n")) == 2  # the subject paragraph (one line) and HQ's trailers, nothing else
    assert len(subject) <= commits.SUBJECT_LIMIT


def test_escape_sequences_and_invisible_characters_leave_the_subject() -> None:
    subject = commits.subject("\x1b]0;pwned\x07Added\x00 mul\u200b\u202e to\x9b31m calc\x7f.", "fallback")
    assert subject == "]0;pwned Added mul to 31m calc ."
    assert all(ch.isprintable() for ch in subject)


def test_a_long_summary_is_cut_at_a_word_with_an_ellipsis() -> None:
    subject = commits.subject("Added " + "multiplication " * 20 + "to calc.", "fallback")
    assert len(subject) <= commits.SUBJECT_LIMIT and subject.endswith("multiplication…")
    unbroken = commits.subject("x" * 500, "fallback")
    assert unbroken == "x" * (commits.SUBJECT_LIMIT - 1) + "…"


def test_non_ascii_text_is_kept() -> None:
    assert commits.subject("Añadí «mul» — 乘法", "fallback") == "Añadí «mul» — 乘法"


def test_hq_body_stays_before_the_trailers() -> None:
    message = commits.message(
        "Revert issue #7: verify failed",
        fallback="x",
        issue_id=7,
        run_id=None,
        agent="devops-engineer",
        body="This reverts merge abc.",
    )
    assert (
        message
        == "Revert issue #7: verify failed\n\nThis reverts merge abc.\n\nHQ-Issue: 7\nHQ-Agent: devops-engineer\n"
    )
