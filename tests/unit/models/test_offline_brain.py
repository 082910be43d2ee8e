"""The offline model's worker takes code from people (the issue, a person's comment), never from an agent's
comment quoting a command's output.
"""

from __future__ import annotations


def test_the_offline_worker_takes_code_from_people_never_from_an_agents_comment() -> None:
    """The gate's review comment quotes the command's output, which the code under test controls."""
    from models.offline_brain import _code_source

    block = "```python file=calc.py\nx = 1\n```\n"
    failed = "Review round 1 failed (score 0):\n" + block
    quoted = {"author": "agent:eng-lead-platform", "kind": "review", "body": failed}
    body = {"issue": {"body": "```python file=calc.py\nx = 0\n```\n"}}
    assert _code_source(body | {"comments": [quoted]}) == ({"calc.py": "x = 0\n"}, True)  # the body; tried and failed
    person = {"author": "human:ana", "kind": "revision", "body": "Try this:\n" + block}
    assert _code_source(body | {"comments": [quoted, person]}) == ({"calc.py": "x = 1\n"}, False)
