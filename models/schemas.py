"""The structured answers workflows ask models for (the offline model builds these too)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from config.vocabulary import Tier

Title = Annotated[str, Field(min_length=1, max_length=500)]


class Assignment(BaseModel):
    assignee: Annotated[str, Field(description="Slug of the direct report who should own the issue.")]
    reason: Annotated[str, Field(max_length=1000)] = ""


class ReviewVerdict(BaseModel):
    score: Annotated[float, Field(ge=0, le=1, description="Quality against the checklist, 0 to 1.")]
    passed: bool
    notes: Annotated[list[Annotated[str, Field(max_length=2000)]], Field(max_length=20)] = []


class PlannedIssue(BaseModel):
    goal_id: int
    title: Title
    body: Annotated[str, Field(max_length=20_000)] = ""
    priority: Annotated[int, Field(ge=0, le=9)] = 5


class Reprioritisation(BaseModel):
    issue_id: int
    priority: Annotated[int, Field(ge=0, le=9)]


class Plan(BaseModel):
    issues: Annotated[list[PlannedIssue], Field(max_length=10)] = []
    reprioritise: Annotated[list[Reprioritisation], Field(max_length=50)] = []


class SubIssueSpec(BaseModel):
    title: Title
    body: Annotated[str, Field(max_length=20_000)] = ""
    assignee: str


class EscalationDecision(BaseModel):
    model_config = ConfigDict(extra="ignore")

    action: Literal["reassign", "unblock", "split", "escalate"]
    reason: Annotated[str, Field(max_length=2000)] = ""
    guidance: Annotated[str, Field(max_length=5000)] = ""
    assignee: str | None = None
    subissues: Annotated[list[SubIssueSpec], Field(max_length=8)] = []


class PlaybookChoice(BaseModel):
    playbook: str | None = Field(description="Name of the best-fitting playbook, or null if none fits.")
    reason: Annotated[str, Field(max_length=1000)] = ""


class ModuleSpec(BaseModel):
    id: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_-]{0,40}$")]
    title: Title
    role: str
    tier: Tier = "execution"
    depends_on: list[str] = []
    output: Annotated[str, Field(min_length=1, max_length=2000)]


class PlaybookAdaptation(BaseModel):
    modules: Annotated[list[ModuleSpec], Field(min_length=1, max_length=12)]
    reason: Annotated[str, Field(max_length=2000)] = ""
