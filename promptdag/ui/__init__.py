"""The traces page: `promptdag ui`, and /ui in the service."""
