"""A German prompt pack: instructions in German, answers asked for in German.

Prompt nodes: chunk_summary_prompt, final_summary_prompt (same contract as prompts/default.py).
"""

from __future__ import annotations

from hamilton.function_modifiers import config

from prompts._render import key_points, query_line


@config.when(chunk_summary_prompt_version="v1")
def chunk_summary_prompt__v1(content_type: str = "einem Dokument") -> str:
    """Kernpunkte mit Begründung, auf Deutsch."""
    return (
        f"Fasse diesen Text aus {content_type} auf Deutsch zusammen. "
        "Nenne die Kernpunkte mit Begründung.\n\nInhalt:\n$chunk"
    )


@config.when(final_summary_prompt_version="v1")
def final_summary_prompt__v1(
    chunk_summaries: list[str], content_type: str = "einem Dokument", user_query: str = ""
) -> str:
    """Eine kurze Zusammenfassung in höchstens 5 Sätzen, auf Deutsch."""
    return (
        f"Schreibe auf Deutsch eine kurze Zusammenfassung von {content_type} in höchstens 5 Sätzen, "
        "nur aus den folgenden Kernpunkten, und beantworte zuerst die Frage, falls es eine gibt.\n"
        f"{query_line(user_query, label='Frage', none='(keine)')}\n"
        f"Kernpunkte:\n{key_points(chunk_summaries)}\nZusammenfassung:\n"
    )
