"""PowerShell syntax check for tests: the tree-sitter PowerShell grammar (no PowerShell runs here)."""

from __future__ import annotations

import tree_sitter
import tree_sitter_powershell

_PARSER = tree_sitter.Parser(tree_sitter.Language(tree_sitter_powershell.language()))


def syntax_errors(source: str) -> list[str]:
    """Where ``source`` does not parse as PowerShell: ``line:column: text`` per error (empty when it parses)."""
    data = source.encode("utf-8")
    errors = []
    pending = [_PARSER.parse(data).root_node]
    while pending:
        node = pending.pop()
        if node.type == "ERROR" or node.is_missing:
            snippet = data[node.start_byte:node.end_byte][:60].decode("utf-8", "replace")
            label = f"missing {node.type}" if node.is_missing else repr(snippet)
            errors.append(f"{node.start_point.row + 1}:{node.start_point.column + 1}: {label}")
        pending.extend(node.children)
    return errors
