"""The Azure OpenAI client: OpenAI's wire format on Azure's paths and headers.

``POST {endpoint}/openai/deployments/{deployment}/chat/completions?api-version={api_version}``
with an ``api-key`` header; the provider's ``base_url`` is the endpoint
(``https://NAME.openai.azure.com``). Without a configured ``deployment`` the
requested model name is used as the deployment name. Health is the
data-plane models list, ``GET {endpoint}/openai/models?api-version=...``.
"""

from urllib.parse import quote

from .openai import OpenAIProvider


class AzureProvider(OpenAIProvider):
    """A client of one Azure OpenAI resource."""

    type = "azure"

    @property
    def default_model(self):
        """The configured deployment (Azure routes by deployment, not model)."""
        return self.spec.deployment or "gpt-4o-mini"

    def chat_path(self, model):
        """The deployment's chat completions path, with the API version."""
        deployment = quote(self.spec.deployment or model, safe="")
        return (f"{self.spec.base_path}/openai/deployments/{deployment}/chat/completions"
                f"?api-version={quote(self.spec.api_version, safe='')}")

    def models_path(self):
        """The models list path, with the API version."""
        return f"{self.spec.base_path}/openai/models?api-version={quote(self.spec.api_version, safe='')}"

    def headers(self):
        """Request headers: Azure takes the key in ``api-key``."""
        headers = super().headers()
        headers.pop("Authorization", None)
        if self.spec.api_key:
            headers["api-key"] = self.spec.api_key
        return headers
