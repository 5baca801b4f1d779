"""Chat prompts: a prompt version may return plain text (sent as one user message) or a
`ChatPrompt`: messages with roles, and optionally a JSON schema the answer must follow (sent as
`response_format`, parsed and validated into the call's `parsed`).

Locking, rendering, diffing, hashing and tracing see both forms through `prompt_text`, one
canonical text per prompt.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from string import Template
from typing import Any

__all__ = ["ROLES", "ChatPrompt", "Message", "chat", "prompt_messages", "prompt_text"]

ROLES = ("system", "user", "assistant", "developer")


@dataclass(frozen=True)
class Message:
    role: str
    content: str


@dataclass(frozen=True)
class ChatPrompt:
    """Messages with roles, and the JSON schema of a structured answer (None: free text)."""

    messages: tuple[Message, ...]
    schema: dict[str, Any] | None = None
    schema_name: str = "answer"

    def __post_init__(self) -> None:
        bad = [m.role for m in self.messages if m.role not in ROLES]
        if bad or not self.messages:
            raise ValueError(
                f"a ChatPrompt needs at least one message with a role in {ROLES}; got {bad or 'none'}."
            )

    def text(self) -> str:
        """The canonical text: each message under its role, then the schema as sorted JSON."""
        parts = [f"[{m.role}]\n{m.content}" for m in self.messages]
        if self.schema is not None:
            schema = json.dumps(self.schema, sort_keys=True, indent=2, ensure_ascii=False)
            parts.append(f"[response schema: {self.schema_name}]\n{schema}")
        return "\n\n".join(parts)

    def substitute(self, **values: str) -> ChatPrompt:
        """Every message with `string.Template.substitute(values)` applied (a per-item
        template: raises KeyError on a missing placeholder)."""
        messages = tuple(
            Message(m.role, Template(m.content).substitute(**values)) for m in self.messages
        )
        return replace(self, messages=messages)

    def __str__(self) -> str:
        return self.text()


def chat(
    *,
    user: str,
    system: str = "",
    schema: dict[str, Any] | None = None,
    schema_name: str = "answer",
) -> ChatPrompt:
    """A system message (when given) and a user message, with an optional answer schema."""
    messages = ([Message("system", system)] if system else []) + [Message("user", user)]
    return ChatPrompt(tuple(messages), schema, schema_name)


def prompt_text(prompt: object) -> str:
    """The canonical text of a rendered prompt (plain text, or a ChatPrompt)."""
    return prompt.text() if isinstance(prompt, ChatPrompt) else str(prompt)


def prompt_messages(prompt: str | ChatPrompt) -> list[dict[str, str]]:
    """The chat-completions `messages` for a prompt."""
    if isinstance(prompt, ChatPrompt):
        return [{"role": m.role, "content": m.content} for m in prompt.messages]
    return [{"role": "user", "content": prompt}]
