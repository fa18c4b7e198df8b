"""Markdown output of the reports."""

import html


def markdown_cell(value: object) -> str:
    """`value` as the text of one markdown table cell: one line, `|` escaped,
    and `&`, `<`, `>` as HTML entities, so a text that holds HTML (a test
    example, a user's input) shows as text in a markdown viewer."""
    text = " ".join(str(value).split())
    return html.escape(text, quote=False).replace("|", "\\|")
