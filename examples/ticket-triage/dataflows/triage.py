"""Support ticket → triage (category, urgency, reply) from one structured LLM call, then the
queue the ticket goes to.

Inputs: ticket (the customer's message; its size is capped by the contract), triage_prompt
(from the prompt pack), llm (the LLM client the driver factory built for this Driver).
Config: escalation_urgency (the lowest urgency that pages the on-call team).
Outputs: ticket_text, triage_response, triage, route. The LLM step (which node calls the model
with which prompt) is declared in pyproject.toml; promptdag records every call and its usage.
"""

from __future__ import annotations

from typing import TypedDict

from promptdag import LLM, ChatPrompt, LLMCall, LLMOutputError

URGENCIES = ("low", "normal", "high", "urgent")
QUEUES = {"bug": "engineering", "billing": "billing", "account": "accounts"}


class Triage(TypedDict):
    category: str
    urgency: str
    reply: str


class Route(TypedDict):
    queue: str
    page_on_call: bool


def ticket_text(ticket: str) -> str:
    """The ticket with blank lines trimmed and its closing tag escaped, so it stays data."""
    return ticket.strip().replace("</ticket>", "<\\/ticket>")


async def triage_response(triage_prompt: ChatPrompt, llm: LLM) -> LLMCall:
    """The LLM call that triages the ticket; its JSON answer is checked against the schema."""
    return await llm.complete(triage_prompt)


def triage(triage_response: LLMCall) -> Triage:
    """The triage: the answer parsed and validated against the prompt's JSON schema."""
    answer = triage_response.parsed
    if not isinstance(answer, dict):
        raise LLMOutputError(
            "the triage prompt asked for no JSON schema, so there is no structured answer. "
            "Give the prompt version a schema (promptdag.chat(..., schema=...)).",
            step="triage",
        )
    return Triage(
        category=str(answer["category"]),
        urgency=str(answer["urgency"]),
        reply=str(answer["reply"]),
    )


def route(triage: Triage, escalation_urgency: str) -> Route:
    """The team queue for the ticket's category, and whether it pages the on-call team."""
    urgent = URGENCIES.index(triage["urgency"]) >= URGENCIES.index(escalation_urgency)
    return Route(queue=QUEUES.get(triage["category"], "support"), page_on_call=urgent)
