"""The prompt gates CI runs on every change to a project's prompt packs or dataflows (lockfile,
review report, evals of the declared pipelines, regression judge). See the README's "Review a
prompt change" section."""
