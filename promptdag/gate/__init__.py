"""The prompt gates CI runs on every change to prompts/ or dataflows/ (lockfile, evals,
regression judge). See the README's "Review a prompt change" section."""
