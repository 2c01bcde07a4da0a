"""Provider clients: OpenAI, Anthropic, Azure OpenAI and the built-in offline provider.

``build_provider(spec, pool, clock)`` returns the client for a
``ProviderSpec``; ``settings.load_specs`` validates the configuration.
"""

from .anthropic import AnthropicProvider
from .azure import AzureProvider
from .offline import OfflineProvider
from .openai import OpenAIProvider

CLIENTS = {"openai": OpenAIProvider, "anthropic": AnthropicProvider, "azure": AzureProvider,
           "offline": OfflineProvider}


def build_provider(spec, pool, clock):
    """The client for ``spec`` (its connections come from ``pool``)."""
    return CLIENTS[spec.type](spec, pool, clock)
