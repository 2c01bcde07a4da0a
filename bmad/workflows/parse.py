"""The small JSON status block a BMAD tool closes its answer with.

The tools' instructions ask for a final fenced block::

    ```json
    {"status": "complete|partial|blocked", "assumptions": [...], "open_questions": [...]}
    ```

Models do not always comply, so parsing never raises: a missing or malformed
block gives ``None`` and the step still succeeds.
"""

import json
import re

STATUSES = ("complete", "partial", "blocked")
# The block sits at the end; looking further back only risks matching an example in the body.
TAIL_CHARS = 8192
MAX_ITEMS = 50
MAX_ITEM_CHARS = 500
FENCE = re.compile(r"```(?:json|JSON)?[ \t]*\n(.*?)\n[ \t]*```", re.DOTALL)


def status_block(text):
    """The trailing status block of ``text`` as ``{"status", "assumptions", "open_questions"}``, or None."""
    if not isinstance(text, str):
        return None
    tail = text[-TAIL_CHARS:]
    blocks = FENCE.findall(tail)
    if not blocks:
        return None
    try:
        value = json.loads(blocks[-1])
    except ValueError:
        return None
    if not isinstance(value, dict) or value.get("status") not in STATUSES:
        return None
    return {"status": value["status"],
            "assumptions": _strings(value.get("assumptions")),
            "open_questions": _strings(value.get("open_questions"))}


def _strings(items):
    if not isinstance(items, list):
        return []
    return [item[:MAX_ITEM_CHARS] for item in items[:MAX_ITEMS] if isinstance(item, str)]
