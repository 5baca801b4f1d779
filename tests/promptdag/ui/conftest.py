"""The service fixtures (an in-process app of the tiny project or the reference app)."""

from tests.promptdag.service.conftest import make_client, tiny, tiny_project

__all__ = ["make_client", "tiny", "tiny_project"]
