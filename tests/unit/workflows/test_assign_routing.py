"""Project issues go to engineers (the `code` toolset), of the project's team when it names one; other issues
route exactly as before. Pure: the bundled roster as the agents table would hold it."""

from __future__ import annotations

import dataclasses

from db.store import AgentRecord, IssueRecord
from tests.support.records import by_slug, company, issue, reports
from workflows.assign import decide_by_keywords, options, subtree_keywords, words
from workflows.lib import routing


def walk(agents: dict[int, AgentRecord], work: IssueRecord, team: str | None = None) -> list[str]:
    """Route by keywords alone from the root down (a tie takes the first candidate), as assign would level by level;
    a fallback hands the issue over directly. The path of holders, ending with the owner."""
    team_id = by_slug(agents, team).id if team else None
    holder = next(a for a in agents.values() if a.manager_id is None)
    path = [holder.slug]
    while "assign" in holder.workflows:
        found = options(work, holder, reports(agents, holder.slug), agents, team_id)
        if not found.candidates:
            assert found.fallback is not None, path
            holder = found.fallback
        else:
            text = words(f"{work.title} {work.body}")
            scores = {slug: len(text & vocabulary) for slug, vocabulary in found.vocabulary.items()}
            chosen = decide_by_keywords(scores) or found.candidates[0].slug
            holder = by_slug(agents, chosen)
        path.append(holder.slug)
    return path


PYTHON_TOKENS = issue("Fix the tokens bug in the Python parser", "Parsing two tokens in a row raises KeyError.")


def test_a_project_issue_only_meets_reports_that_lead_to_engineers() -> None:
    agents = company()
    ceo = by_slug(agents, "ceo")
    everyone = reports(agents, "ceo")
    assert [a.slug for a in options(issue("Fix the build"), ceo, everyone, agents, None).candidates] == [
        "vp-engineering"
    ]
    # Not a project issue: every report, with its whole subtree's words, exactly as before.
    plain = options(issue("Fix the build", project_id=None), ceo, everyone, agents, None)
    assert plain.candidates == everyone and not plain.only_engineers
    assert plain.vocabulary == {c.slug: subtree_keywords(agents, c) for c in everyone}
    # Within engineering, the words of roles that cannot code (none here) would not count; the leads' do.
    vp = by_slug(agents, "vp-engineering")
    found = options(issue("x"), vp, reports(agents, "vp-engineering"), agents, None)
    assert {c.slug for c in found.candidates} == {"eng-lead-platform", "eng-lead-web", "qa-lead"}
    assert "migration" in found.vocabulary["eng-lead-platform"] and "tokens" in found.vocabulary["eng-lead-web"]


def test_every_project_issue_ends_with_an_engineer_and_a_team_keeps_it_inside() -> None:
    agents = company()
    titles = [
        PYTHON_TOKENS,
        issue("Quarantine the flaky login test", "The e2e login test fails one run in twenty."),
        issue("Fix the modal CSS on narrow screens", "The layout breaks below 400px in the browser."),
        issue("Add a migration for the invoices table", "New column and a backfill."),
        issue("Fix the docs typo in README.md", "The quickstart says 'instal'."),
        issue("Write the newsletter blog post announcing the CLI", "A blog post for readers, in the repo's docs."),
    ]
    for work in titles:
        path = walk(agents, work)
        assert routing.can_code(by_slug(agents, path[-1])), path
    # Keywords alone send the Python fix to design systems ("tokens"); the platform team keeps it.
    assert walk(agents, PYTHON_TOKENS)[-1] == "design-systems-engineer"
    team = {a.slug for a in routing.active_subtree(agents, by_slug(agents, "eng-lead-platform"))}
    for work in titles:
        path = walk(agents, work, team="eng-lead-platform")
        assert path[-1] in team and routing.can_code(by_slug(agents, path[-1])), path
    assert walk(agents, PYTHON_TOKENS, team="eng-lead-platform")[:3] == ["ceo", "vp-engineering", "eng-lead-platform"]


def test_a_manager_without_engineers_hands_on_to_the_team_or_the_nearest_engineer() -> None:
    agents = company()
    content = by_slug(agents, "vp-content")
    work = issue("Fix the docs typo in README.md")
    platform = by_slug(agents, "eng-lead-platform")
    to_team = options(work, content, reports(agents, "vp-content"), agents, platform.id)
    assert not to_team.candidates and to_team.fallback == platform and "team" in to_team.fallback_how
    nearest = options(work, content, reports(agents, "vp-content"), agents, None)
    assert nearest.fallback is not None and routing.can_code(nearest.fallback)
    # Four reporting lines from vp-content (via the CEO and the VP of engineering); ties by slug.
    assert nearest.fallback.slug == "backend-engineer"


def test_a_team_whose_engineers_are_all_paused_falls_back_to_the_company_engineers() -> None:
    web = ("design-systems-engineer", "frontend-engineer", "mobile-engineer")
    agents = company(paused=web)
    lead = by_slug(agents, "eng-lead-web")
    found = options(issue("Fix the modal CSS"), lead, reports(agents, "eng-lead-web"), agents, lead.id)
    assert not found.candidates and found.fallback is not None
    assert routing.can_code(found.fallback) and found.fallback.slug not in web
    nobody = company(paused=tuple(a.slug for a in company().values() if routing.can_code(a)))
    none = options(issue("x"), by_slug(nobody, "ceo"), reports(nobody, "ceo"), nobody, None)
    assert none.candidates == [] and none.fallback is None and none.only_engineers


def test_the_record_the_routing_reads_has_no_field_it_does_not_know() -> None:
    assert {f.name for f in dataclasses.fields(AgentRecord)} >= {"toolsets", "manager_id", "status", "skills"}
