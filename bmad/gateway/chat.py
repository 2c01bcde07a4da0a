"""The internal chat request: validation of the OpenAI chat shape every call is normalised to.

``parse_chat_request(body)`` turns an OpenAI chat completions body into a
``ChatRequest`` (400 naming the bad field); ``check_model`` and
``check_messages`` are its parts, for the other entry points;
``tool_summary(tool)`` is what a call carries of a catalog tool.
"""

from ..errors import BadRequest
from ..providers.base import ChatRequest

ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})
DEFAULT_ALIAS = "bmad-default"
MAX_MODEL_CHARS = 256
MAX_MESSAGES = 10000
# What a call carries of the catalog tool it runs for (analytics, the offline provider's answer).
TOOL_FIELDS = ("id", "name", "role", "description", "produces")


def _number(body, name, low, high):
    value = body.get(name)
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise BadRequest(f"field '{name}' must be a number from {low} to {high}", param=name)


def _positive_int(body, name):
    value = body.get(name)
    if isinstance(value, float) and value.is_integer():
        value = body[name] = int(value)  # JSON has one number type: 3.0 is the integer 3
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise BadRequest(f"field '{name}' must be a positive integer", param=name)


def check_model(model, field="model"):
    """A requested model name, or 400 naming ``field``."""
    if not isinstance(model, str) or not model.strip():
        raise BadRequest(f"field '{field}' is required: a model name or alias (GET /v1/models lists them)",
                         param=field)
    if len(model) > MAX_MODEL_CHARS or any(ord(ch) < 32 for ch in model):
        raise BadRequest(f"field '{field}' must be at most {MAX_MODEL_CHARS} printable characters", param=field)
    return model


def check_messages(messages):
    """The OpenAI ``messages`` list, or 400 naming the bad element."""
    if not isinstance(messages, list) or not messages:
        raise BadRequest("field 'messages' is required: a non-empty list of {role, content}", param="messages")
    if len(messages) > MAX_MESSAGES:
        raise BadRequest(f"field 'messages' has more than {MAX_MESSAGES} messages", param="messages")
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(message, dict):
            raise BadRequest(f"field '{where}' must be an object with role and content", param=where)
        role = message.get("role")
        if not isinstance(role, str) or role not in ROLES:  # a dict or list role is unhashable: check the type first
            raise BadRequest(f"field '{where}.role' must be one of {', '.join(sorted(ROLES))}", param=f"{where}.role")
        content = message.get("content")
        if content is not None and not isinstance(content, (str, list)):
            raise BadRequest(f"field '{where}.content' must be a string or a list of content parts",
                             param=f"{where}.content")
        if isinstance(content, list) and not all(isinstance(part, dict) for part in content):
            raise BadRequest(f"field '{where}.content' parts must be objects", param=f"{where}.content")
    return messages


def parse_chat_request(body):
    """Validate an OpenAI chat completions body and return its ``ChatRequest``."""
    model = check_model(body.get("model"))
    messages = check_messages(body.get("messages"))
    stream = body.get("stream", False)
    if stream is None:
        stream = False
    if not isinstance(stream, bool):
        raise BadRequest("field 'stream' must be a boolean", param="stream")
    options = body.get("stream_options")
    if options is not None and not isinstance(options, dict):
        raise BadRequest("field 'stream_options' must be an object", param="stream_options")
    include_usage = bool(options and options.get("include_usage") is True)
    _number(body, "temperature", 0, 2)
    _number(body, "top_p", 0, 1)
    _number(body, "presence_penalty", -2, 2)
    _number(body, "frequency_penalty", -2, 2)
    for name in ("max_tokens", "max_completion_tokens", "n"):
        _positive_int(body, name)
    stop = body.get("stop")
    if stop is not None and not (isinstance(stop, str) or isinstance(stop, list) and len(stop) <= 4
                                 and all(isinstance(s, str) for s in stop)):
        raise BadRequest("field 'stop' must be a string or a list of up to 4 strings", param="stop")
    params = {k: v for k, v in body.items() if k not in ("model", "messages", "stream", "stream_options")}
    return ChatRequest(model, messages, params, stream=stream, include_usage=include_usage)


def tool_model(tools_config, tool_id, requested=None, run_model=None):
    """The model a run of ``tool_id`` uses: ``requested`` > ``tools.<id>.model`` > the run's model > ``bmad-default``."""
    if requested is not None:
        return check_model(requested)
    configured = (tools_config.get(tool_id) or {}).get("model")
    if isinstance(configured, str) and configured:
        return configured
    return run_model or DEFAULT_ALIAS


def tool_summary(tool):
    """The fields of a catalog tool that a call carries (``TOOL_FIELDS``), or None."""
    return {k: tool.get(k) for k in TOOL_FIELDS} if tool else None
